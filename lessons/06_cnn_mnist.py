# %% [markdown]
# # Lesson 6: a convolutional network on MNIST, trained by gptlab's trainer
#
# A dense layer treats an image as 784 unrelated numbers. A convolution slides one small filter
# over the whole image, so a stroke detector learned at one place works everywhere, with a few
# hundred weights. Stacking convolutions and poolings builds detectors of strokes, then of
# loops and corners, then of digits.
#
# The model is `gptlab.models.cnn.ConvNet`. It trains with the same `Trainer` that trains GPTs:
# the trainer knows nothing about images, it needs a function that gives batches, a loss
# function, and callbacks for the rest: a progress bar, a metrics file, TensorBoard,
# checkpoints, early stopping.

# %%
import shutil

import matplotlib.pyplot as plt
import torch
from lesson_mode import QUICK, output_dir, quick_or_full, save_figure
from torch.optim.lr_scheduler import CosineAnnealingLR

from gptlab.data.mnist import MNISTBatches, accuracy, classification_loss, load_mnist
from gptlab.models.cnn import ConvNet
from gptlab.training.callbacks import (
    Checkpointer,
    EarlyStopping,
    MetricsLog,
    ProgressBar,
    TensorBoard,
)
from gptlab.training.checkpoint import MODEL_FILE, load_weights
from gptlab.training.config import TrainConfig
from gptlab.training.trainer import Trainer
from gptlab.viz import plot_curves

torch.manual_seed(0)
EPOCHS = quick_or_full(2, 10)
device = torch.device("cpu")

# %% [markdown]
# ## Data: train, validation, test
#
# The 5,000 training images are split: 4,500 to learn from and 500 to *validate*, i.e. to watch
# for overfitting and choose when to stop. The 10,000 test images are looked at once, at the
# end: a number measured on data that guided no decision. `MNISTBatches` gives the trainer its
# batches as a pure function of the step (each epoch a permutation seeded by its number), so a
# resumed run sees exactly the batches it would have seen; training batches are augmented with
# random rotations, shifts and zooms (lesson 5).

# %%
images, labels = load_mnist("train-5k")
order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
validation_index, train_index = order[:500], order[500:]
test_images, test_labels = load_mnist("test")
if QUICK:  # a small slice of everything, to run in seconds
    train_index, validation_index = train_index[:768], validation_index[:128]
    test_images, test_labels = test_images[:500], test_labels[:500]

train = MNISTBatches(images[train_index], labels[train_index], batch_size=64, augment=True)
validation = MNISTBatches(images[validation_index], labels[validation_index], batch_size=128)
test = MNISTBatches(test_images, test_labels, batch_size=500)
print(
    f"train {len(train_index)}, validation {len(validation_index)}, test {len(test_images)} images"
)

# %% [markdown]
# ## The model
#
# Two stages of (convolution, batch norm, ReLU) x 2 and max-pooling, then a dense head. Follow
# one batch through the stages to see the shapes: channels grow while the image shrinks.

# %%
model = ConvNet()
print(model)
print(f"{sum(p.numel() for p in model.parameters()):,} parameters")
batch_images, batch_labels = train.train_batch(0, 0)
activations = batch_images
for stage in model.features:
    activations = stage(activations)
    print(f"after {type(stage[0]).__name__} stage: {tuple(activations.shape)}")
print("logits:", tuple(model(batch_images).shape))

# %% [markdown]
# ## The learning-rate schedule and `CosineAnnealingLR`
#
# The trainer sets the learning rate itself at every step from `trainer.learning_rate(step)`:
# a linear warmup over `warmup_iters` steps, then a cosine decay from `lr` to `min_lr`. With no
# warmup that is exactly PyTorch's `CosineAnnealingLR(optimizer, T_max=max_iters,
# eta_min=min_lr)`, stepped once per optimizer step. The two are compared below, so a recipe
# written with the PyTorch scheduler carries over as `warmup_iters=0`.

# %%
steps_per_epoch = train.batches_per_epoch
config = TrainConfig(
    max_iters=EPOCHS * steps_per_epoch,
    batch_size=64,
    lr=3e-3,
    min_lr=3e-5,
    warmup_iters=0,
    weight_decay=0.05,
    eval_interval=steps_per_epoch,  # validate once an epoch
    log_interval=10,
    patience=3,
    device="cpu",
    dtype="float32",
)

probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.lr)
scheduler = CosineAnnealingLR(probe, T_max=config.max_iters, eta_min=config.min_lr)
torch_rates = []
for _ in range(config.max_iters):
    torch_rates.append(probe.param_groups[0]["lr"])
    probe.step()
    scheduler.step()

# %% [markdown]
# ## Training
#
# The loss function takes the model and one batch, `(images, labels)`, and returns the
# cross-entropy; `count_items` tells the trainer what to count per second (images, not pixels).
# The callbacks:
#
# - `MetricsLog` appends each logged step and each evaluation to `metrics.jsonl`;
# - `TensorBoard` writes event files: `uv run tensorboard --logdir lessons/out/06_cnn_run`
#   and open the address it prints;
# - `Checkpointer` keeps the weights with the best validation loss in `model.safetensors`;
# - `EarlyStopping(patience=3)` stops after 3 evaluations in a row without a better
#   validation loss: more epochs would fit the training images better and the others worse.

# %%
run_dir = output_dir() / "06_cnn_run"
shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run each time the lesson runs
run_dir.mkdir(parents=True)
trainer = Trainer(
    model,
    config,
    train_batch=train.train_batch,
    eval_batches=validation.eval_batches,
    device=device,
    loss_fn=classification_loss,
    count_items=lambda batch: len(batch[1]),
    callbacks=[
        ProgressBar(unit="img"),
        MetricsLog(run_dir / "metrics.jsonl"),
        TensorBoard(run_dir / "tensorboard"),
        Checkpointer(run_dir),
        EarlyStopping(patience=config.patience),
    ],
)
gptlab_rates = [trainer.learning_rate(step) for step in range(config.max_iters)]
largest_gap = max(abs(a - b) for a, b in zip(torch_rates, gptlab_rates))
print(f"trainer schedule vs CosineAnnealingLR: largest difference {largest_gap:.2e}")

trainer.fit()
print(
    f"stopped at step {trainer.step} of {config.max_iters}; best validation loss {trainer.best_metric:.4f}"
)

# %% [markdown]
# ## Evaluation: `model.eval()` and `torch.no_grad()`
#
# Two layers behave differently while training. Dropout zeroes random activations (so the same
# input gives different outputs), and batch norm normalises with the statistics of the current
# batch; in evaluation dropout is off and batch norm uses the running averages it collected.
# `model.eval()` switches them; `model.train()` switches back. Separately, `torch.no_grad()`
# stops recording the graph, which evaluation never needs (lesson 2).

# %%
load_weights(model, run_dir / MODEL_FILE)  # the best weights by validation loss
sample_inputs = next(test.eval_batches(8))[0]
with torch.no_grad():
    model.train()
    train_mode_differs = not torch.equal(model(sample_inputs), model(sample_inputs))
    model.eval()
    eval_mode_repeats = torch.equal(model(sample_inputs), model(sample_inputs))
print(
    "train mode: two passes differ:",
    train_mode_differs,
    "| eval mode: identical:",
    eval_mode_repeats,
)

confusion = torch.zeros(10, 10, dtype=torch.long)  # rows: true digit, columns: predicted
mistakes = []
model.eval()
with torch.no_grad():
    for batch_number, (inputs, targets) in enumerate(test.eval_batches()):
        start = batch_number * test.batch_size
        predicted = model(inputs).argmax(dim=-1)
        confusion += torch.bincount(targets * 10 + predicted, minlength=100).view(10, 10)
        wrong = (predicted != targets).nonzero().flatten()
        mistakes += [(start + int(i), int(predicted[i])) for i in wrong]
test_accuracy = confusion.trace().item() / confusion.sum().item()
print(f"test accuracy {test_accuracy:.2%} ({confusion.sum() - confusion.trace()} mistakes)")

# %%
figure, (matrix_axes, *digit_axes) = plt.subplots(
    1, 7, figsize=(14, 3.2), layout="constrained", width_ratios=[3, 1, 1, 1, 1, 1, 1]
)
matrix_axes.imshow(torch.log1p(confusion.float()), cmap="Blues")  # log: mistakes stay visible
for true, predicted in confusion.nonzero().tolist():
    count = confusion[true, predicted].item()
    colour = "white" if true == predicted else "black"
    matrix_axes.text(predicted, true, count, ha="center", va="center", fontsize=6, color=colour)
matrix_axes.set(
    xlabel="predicted", ylabel="true", title="confusion matrix", xticks=range(10), yticks=range(10)
)
for axes, (index, predicted) in zip(digit_axes, mistakes):
    axes.imshow(test_images[index], cmap="gray")
    axes.set_title(f"true {int(test_labels[index])}, said {predicted}", fontsize=9)
    axes.axis("off")
for axes in digit_axes[len(mistakes) :]:
    axes.axis("off")
save_figure(figure, "06_cnn_evaluation.png")
plot_curves(
    run_dir, output_dir() / "06_cnn_curves.png", title="CNN on MNIST: loss and learning rate"
)
print("curves saved to", output_dir() / "06_cnn_curves.png")

# %% [markdown]
# ## Check

# %%
assert largest_gap < 1e-12, "with warmup_iters=0 the trainer's schedule is CosineAnnealingLR"
assert train_mode_differs and eval_mode_repeats
assert abs(test_accuracy - accuracy(model, test.eval_batches())) < 1e-9
assert (run_dir / "metrics.jsonl").is_file() and any((run_dir / "tensorboard").iterdir())
if trainer.step < config.max_iters:  # an early stop happens only after `patience` bad evaluations
    assert trainer.evals_without_improvement >= config.patience
assert test_accuracy > quick_or_full(0.5, 0.98), f"test accuracy {test_accuracy:.2%} is too low"
print("lesson 6 checks passed")
