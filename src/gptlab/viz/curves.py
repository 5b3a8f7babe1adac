"""Training curves from a run's `metrics.jsonl`: loss (train and validation) and learning rate.

The train loss is logged every `log_interval` steps from one batch, so it is noisy; the
validation loss is the mean over many batches at each evaluation. A validation curve that turns
up while the train curve keeps falling is overfitting; the learning-rate panel shows the warmup
and the cosine decay the losses respond to.
"""

from __future__ import annotations

import json
from pathlib import Path

from matplotlib.figure import Figure

from gptlab.errors import DataError
from gptlab.viz.figure import new_figure, save_png

METRICS_FILE = "metrics.jsonl"


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a metrics.jsonl file (or of the one in a run directory), in order."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    if not path.is_file():
        raise DataError(
            f"no {METRICS_FILE} at {path}: is this a run directory written by training?"
        )
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise DataError(f"{path}, line {number}, is not JSON: {error}") from error
    if not records:
        raise DataError(f"{path} is empty: the run logged nothing yet")
    return records


def series(records: list[dict], split: str, key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one metric of one split, skipping records without it."""
    chosen = [r for r in records if r.get("split") == split and r.get(key) is not None]
    return [r["step"] for r in chosen], [r[key] for r in chosen]


def plot_curves(run: str | Path, out: str | Path, title: str | None = None) -> Path:
    """Loss (train and val) above learning rate, against the step, written to `out` (PNG)."""
    records = read_metrics(run)
    figure = new_figure(10, 7)
    loss_axes, lr_axes = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for split, style in (
        ("train", dict(alpha=0.6, linewidth=1)),
        ("val", dict(marker="o", linewidth=2)),
    ):
        steps, losses = series(records, split, "loss")
        if steps:
            loss_axes.plot(steps, losses, label=f"{split} loss", **style)
    val_steps, val_losses = series(records, "val", "loss")
    if val_losses:
        best = min(range(len(val_losses)), key=val_losses.__getitem__)
        loss_axes.annotate(
            f"best val {val_losses[best]:.3f}",
            (val_steps[best], val_losses[best]),
            xytext=(0, 14),
            textcoords="offset points",
            ha="right" if best == len(val_losses) - 1 else "center",  # stay inside the axes
            fontsize=10,
        )
    losses = [r["loss"] for r in records if r.get("loss") is not None and r["loss"] > 0]
    if losses and max(losses) > 20 * min(losses):  # a loss that falls by orders of magnitude
        loss_axes.set_yscale("log")
    loss_axes.set_ylabel("cross-entropy loss")
    loss_axes.legend()
    loss_axes.grid(alpha=0.3)
    # Evaluations record the rate too: with both, the curve starts at step 0, not at the first log.
    with_rate = sorted((r["step"], r["lr"]) for r in records if r.get("lr") is not None)
    lr_steps, rates = zip(*with_rate) if with_rate else ((), ())
    lr_axes.plot(lr_steps, rates, color="tab:green")
    lr_axes.set_ylabel("learning rate")
    lr_axes.set_xlabel("step")
    lr_axes.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    lr_axes.grid(alpha=0.3)
    source = Path(run)
    figure.suptitle(title or f"training curves of {source.name if source.is_dir() else source}")
    return save_png(figure, out)


def loss_comparison(runs: dict[str, Path]) -> Figure:
    """The train and val loss of several runs against the step, on one axes: a colour a run,
    the noisy train loss thin, the validation loss with its evaluations marked."""
    figure = new_figure(10, 5)
    axes = figure.subplots()
    for colour, (name, run) in enumerate(runs.items()):
        records = read_metrics(run)
        for split, style in (
            ("train", dict(alpha=0.5, linewidth=1)),
            ("val", dict(marker="o", linewidth=2)),
        ):
            steps, losses = series(records, split, "loss")
            if steps:
                axes.plot(steps, losses, color=f"C{colour}", label=f"{name} {split}", **style)
    axes.set_xlabel("step (each run counts its own)")
    axes.set_ylabel("cross-entropy loss")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.suptitle("training curves")
    return figure
