# %% [markdown]
# # Lesson 5: datasets, data loaders and transforms
#
# Training reads data in small random batches, over and over. PyTorch splits that job in two:
#
# - a `Dataset` says how many examples there are (`__len__`) and how to get example i
#   (`__getitem__`);
# - a `DataLoader` draws indices (in order or shuffled), fetches the examples, possibly in
#   worker processes, and stacks them into batch tensors.
#
# A *transform* turns a raw example into what the model eats: a PIL image into a normalised
# tensor, with random changes (*augmentation*) during training so the model sees a slightly
# different digit every epoch.
#
# The data is MNIST: 28 x 28 grey images of handwritten digits. gptlab's `load_mnist` reads the
# registry's files (from `GPTLAB_DATA`, or downloads them): `uv run gptlab data fetch mnist`.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from lesson_mode import quick_or_full, save_figure
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from gptlab.data.mnist import MNIST_MEAN, MNIST_STD, load_mnist

torch.manual_seed(0)
images, labels = load_mnist("train-5k")  # (5000, 28, 28) uint8, (5000,) int64
# The file is sorted by label: a random subset keeps all ten digits in quick mode.
subset = torch.randperm(len(images))[: quick_or_full(512, len(images))]
images, labels = images[subset], labels[subset]
print(f"{len(images)} images of shape {tuple(images.shape[1:])}, dtype {images.dtype}")

# %% [markdown]
# ## A custom `Dataset`
#
# Two methods are the whole contract. Item i is a PIL image here, the form torchvision's
# transforms (and most image files) come in; the transform, if any, makes it a tensor.

# %%


class DigitImages(Dataset):
    """MNIST digits held in memory: item i is (transform(image i), label i)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform=None):
        self.images = images  # (N, 28, 28) uint8
        self.labels = labels  # (N,) int64
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images[index].numpy())  # a grey PIL image
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])


raw = DigitImages(images, labels)
first_image, first_label = raw[0]
print(
    len(raw),
    "items; item 0 is a",
    type(first_image).__name__,
    "of size",
    first_image.size,
    "label",
    first_label,
)

# %% [markdown]
# ## Transforms: `Compose`, `ToTensor`, `Normalize`, augmentation
#
# - `ToTensor` turns a PIL image of bytes 0..255 into a float tensor (1, 28, 28) in [0, 1];
# - `Normalize(mean, std)` subtracts the training set's mean pixel and divides by its standard
#   deviation, so inputs are centred with unit variance (the scale initialisations assume);
# - `RandomAffine` rotates, shifts and zooms a little: a digit turned by 10 degrees is the same
#   digit, so the model learns that, instead of memorising the training images' exact pixels.
#
# `Compose` chains them. Augmentation is for training only: evaluation uses the fixed pipeline.

# %%
evaluation_transform = transforms.Compose(
    [transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))]
)
training_transform = transforms.Compose(
    [
        transforms.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1)),
        transforms.ToTensor(),
        transforms.Normalize((MNIST_MEAN,), (MNIST_STD,)),
    ]
)
train_set = DigitImages(images, labels, training_transform)
eval_set = DigitImages(images, labels, evaluation_transform)
tensor, label = eval_set[0]
print("after the transform:", tuple(tensor.shape), tensor.dtype, f"mean {tensor.mean():.3f}")

# %%
figure, grid = plt.subplots(3, 8, figsize=(10, 4), layout="constrained")
for column in range(8):
    grid[0, column].imshow(raw[column][0], cmap="gray")
    grid[0, column].set_title(f"label {raw[column][1]}", fontsize=9)
    for row in (1, 2):  # two random augmentations of the same image
        augmented = train_set[column][0][0] * MNIST_STD + MNIST_MEAN  # undo Normalize to show it
        grid[row, column].imshow(augmented, cmap="gray", vmin=0, vmax=1)
for axes in grid.flat:
    axes.axis("off")
figure.suptitle("top: the images; below: two random augmentations of each")
save_figure(figure, "05_augmentation.png")

# %% [markdown]
# ## `DataLoader`: batching and shuffling
#
# The default *collate* function stacks the items of a batch: B tensors (1, 28, 28) become one
# (B, 1, 28, 28), B labels one (B,) tensor. `shuffle=True` draws a new random order every epoch
# (from `generator`, so the orders are reproducible); `drop_last=True` drops a last, smaller batch.

# %%
loader = DataLoader(
    eval_set, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0)
)
batch_images, batch_labels = next(iter(loader))
print(
    "one batch:",
    tuple(batch_images.shape),
    tuple(batch_labels.shape),
    f"{len(loader)} batches an epoch",
)

index_loader = DataLoader(
    range(len(eval_set)), batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0)
)
epoch_orders = [torch.cat(list(index_loader)) for _ in range(2)]
print("first indices of epoch 1:", epoch_orders[0][:8].tolist())
print("first indices of epoch 2:", epoch_orders[1][:8].tolist())

# Pixels over the whole (normalised) set: mean about 0 and standard deviation about 1.
everything = torch.cat([b for b, _ in DataLoader(eval_set, batch_size=256)])
print(f"normalised pixels: mean {everything.mean():.3f}, std {everything.std():.3f}")

# %% [markdown]
# ## `num_workers` and the `if __name__ == "__main__":` guard
#
# With `num_workers=0` the main process loads each batch itself, between training steps. With
# `num_workers > 0` worker processes prepare the next batches while the model trains on the
# current one: worth it when `__getitem__` is slow (decoding image files, augmenting), not for
# tensors already in memory.
#
# On macOS and Windows, workers are *spawned*: each starts a fresh Python that imports your
# script to find the Dataset class. Code at the top level of the script would run again in every
# worker, and the workers would start workers of their own: put the code that creates loaders
# under `if __name__ == "__main__":`, which is true only in the process you started. (Linux
# *forks* workers as copies of the running process, which hides the mistake until the script
# runs elsewhere.) Also: the Dataset class must be importable, so define it in a file, not in a
# notebook cell, when you use workers with spawn.


# %%
def time_one_epoch(workers: int) -> float:
    loader = DataLoader(train_set, batch_size=128, shuffle=True, num_workers=workers)
    started = time.perf_counter()
    count = sum(len(batch_labels) for _, batch_labels in loader)
    assert count == len(train_set)
    return time.perf_counter() - started


if __name__ == "__main__":
    timings = {workers: time_one_epoch(workers) for workers in (0, 2)}
    for workers, seconds in timings.items():
        print(f"num_workers={workers}: one augmented epoch in {seconds:.2f} s")

# %% [markdown]
# ## Check

# %%
assert len(raw) == len(subset) and tensor.shape == (1, 28, 28) and tensor.dtype == torch.float32
assert batch_images.shape == (64, 1, 28, 28) and batch_labels.shape == (64,)
for order in epoch_orders:  # every epoch visits every index exactly once
    assert torch.equal(order.sort().values, torch.arange(len(eval_set)))
assert not torch.equal(epoch_orders[0], epoch_orders[1]), "shuffle=True reorders every epoch"
assert abs(everything.mean().item()) < 0.1 and abs(everything.std().item() - 1) < 0.1
first, second = train_set[0][0], train_set[0][0]
assert first.shape == second.shape and not torch.equal(first, second), "augmentation is random"
assert torch.equal(eval_set[0][0], eval_set[0][0]), "evaluation transforms are fixed"
assert np.isclose(MNIST_MEAN, 0.1307) and np.isclose(MNIST_STD, 0.3081)
print("lesson 5 checks passed")
