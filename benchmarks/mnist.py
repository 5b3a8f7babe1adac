"""MNIST from 5,000 training images: logistic regression, one hidden layer, and a CNN.

All three learn from the same 5,000 training images (the balanced subset of the `mnist` dataset)
and are tested on the 10,000 test images. The peer is scikit-learn's logistic regression, the
classical baseline; the two networks are gptlab's `MLP` (one hidden layer) and `ConvNet`, trained
by gptlab's `Trainer` (AdamW, cosine learning-rate decay), the CNN with random rotations, shifts
and zooms of its training images. The table gives test accuracy, training time (wall clock, this
process's threads) and the number of parameters; the run fails if the CNN is below 98.0%.

    GPTLAB_DATA=../shared/data uv run python benchmarks/mnist.py            # a few minutes on 2 cores
    GPTLAB_DATA=../shared/data uv run python benchmarks/mnist.py --quick    # smoke run, seconds
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

CNN_TARGET = 0.98


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    parser.add_argument("--cnn-epochs", type=int, default=8, help="CNN epochs (default 8)")
    parser.add_argument("--mlp-epochs", type=int, default=20, help="MLP epochs (default 20)")
    parser.add_argument("--hidden", type=int, default=256, help="MLP hidden units (default 256)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="1,000 images, one epoch each")
    return parser.parse_args()


def train_network(model, train, epochs: int, lr: float, device) -> float:
    """Train `model` with gptlab's Trainer for `epochs` passes over `train`; return the seconds."""
    from gptlab.data.mnist import classification_loss
    from gptlab.training.config import TrainConfig
    from gptlab.training.trainer import Trainer

    steps_per_epoch = train.batches_per_epoch
    config = TrainConfig(
        max_iters=epochs * steps_per_epoch,
        batch_size=train.batch_size,
        lr=lr,
        min_lr=lr / 100,
        warmup_iters=steps_per_epoch // 2,
        weight_decay=0.05,
        eval_interval=0,
        log_interval=steps_per_epoch,
        device=device.type,
        dtype="float32",
    )
    trainer = Trainer(
        model,
        config,
        train.train_batch,
        device=device,
        loss_fn=classification_loss,
        count_items=lambda batch: len(batch[1]),
    )
    started = time.perf_counter()
    trainer.fit()
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize()
    return time.perf_counter() - started


def logistic_regression(
    train_images, train_labels, test_images, test_labels
) -> tuple[float, float, int]:
    """scikit-learn's multinomial logistic regression on normalised pixels: (accuracy, seconds, parameters)."""
    from sklearn.linear_model import LogisticRegression

    from gptlab.data.mnist import normalize, to_unit_range

    def features(images):
        return normalize(to_unit_range(images)).flatten(1).numpy()  # (N, 784)

    model = LogisticRegression(max_iter=1000)
    started = time.perf_counter()
    model.fit(features(train_images), train_labels.numpy())
    seconds = time.perf_counter() - started
    accuracy = float((model.predict(features(test_images)) == test_labels.numpy()).mean())
    return accuracy, seconds, model.coef_.size + model.intercept_.size


def main() -> int:
    args = parse_args()
    import torch

    from gptlab.data.mnist import MNISTBatches, accuracy, load_mnist
    from gptlab.device import resolve_device
    from gptlab.models.cnn import ConvNet
    from gptlab.models.mlp import MLP

    device = resolve_device(args.device)
    train_images, train_labels = load_mnist("train-5k")
    test_images, test_labels = load_mnist("test")
    cnn_epochs, mlp_epochs = args.cnn_epochs, args.mlp_epochs
    if args.quick:
        subset = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(0))[
            :1000
        ]
        train_images, train_labels = train_images[subset], train_labels[subset]
        test_images, test_labels = test_images[:2000], test_labels[:2000]
        cnn_epochs = mlp_epochs = 1
    test = MNISTBatches(test_images, test_labels, batch_size=1000, device=device)
    print(
        f"MNIST: {len(train_images):,} training images, {len(test_images):,} test images; "
        f"{device}, {torch.get_num_threads()} threads, torch {torch.__version__}, {platform.machine()}",
        file=sys.stderr,
    )

    rows = []
    print("logistic regression ...", file=sys.stderr)
    rows.append(
        (
            "logistic regression (scikit-learn)",
            *logistic_regression(train_images, train_labels, test_images, test_labels),
        )
    )

    print(f"one hidden layer, {mlp_epochs} epochs ...", file=sys.stderr)
    torch.manual_seed(args.seed)
    mlp = MLP(28 * 28, args.hidden, 10)
    plain = MNISTBatches(train_images, train_labels, 64, seed=args.seed, device=device)
    seconds = train_network(mlp, plain, mlp_epochs, lr=1e-3, device=device)
    rows.append(
        (
            f"one hidden layer ({args.hidden} ReLU, gptlab MLP)",
            accuracy(mlp, test.eval_batches()),
            seconds,
            sum(p.numel() for p in mlp.parameters()),
        )
    )

    print(f"CNN, {cnn_epochs} epochs with augmentation ...", file=sys.stderr)
    torch.manual_seed(args.seed)
    cnn = ConvNet()
    augmented = MNISTBatches(
        train_images, train_labels, 64, seed=args.seed, augment=True, device=device
    )
    seconds = train_network(cnn, augmented, cnn_epochs, lr=3e-3, device=device)
    cnn_accuracy = accuracy(cnn, test.eval_batches())
    rows.append(
        ("CNN (gptlab ConvNet)", cnn_accuracy, seconds, sum(p.numel() for p in cnn.parameters()))
    )

    print()
    print("| model | test accuracy | training time | parameters |")
    print("| --- | ---: | ---: | ---: |")
    for name, test_accuracy, train_seconds, parameters in rows:
        print(f"| {name} | {test_accuracy:.2%} | {train_seconds:.1f} s | {parameters:,} |")
    print()
    print(
        f"train: {len(train_images):,} images (MNIST 5k subset); test: {len(test_images):,} images; "
        f"MLP {mlp_epochs} epochs, CNN {cnn_epochs} epochs, batch 64, AdamW + cosine; {device}, "
        f"{torch.get_num_threads()} threads"
    )
    if not args.quick and cnn_accuracy < CNN_TARGET:
        print(
            f"the CNN reached {cnn_accuracy:.2%}, below the {CNN_TARGET:.0%} it must reach",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
