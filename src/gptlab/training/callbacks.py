"""What the trainer reports to: progress bar, metrics file, TensorBoard, checkpoints, early stop.

Each callback is small and optional; the `train` command gives the main process all of them
and the other processes of a multi-process run none, so that only one process writes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from gptlab.atomic import atomic_write
from gptlab.training.checkpoint import MODEL_FILE, STATE_FILE, save_trainer_state, save_weights
from gptlab.training.trainer import Callback, Trainer


class ProgressBar(Callback):
    """A tqdm bar over optimizer steps showing loss, learning rate and tokens per second."""

    def __init__(self, unit: str = "tok"):
        self.unit = unit
        self.bar = None

    def on_train_begin(self, trainer: Trainer) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=trainer.config.max_iters,
            initial=trainer.step,
            desc="train",
            unit="step",
            dynamic_ncols=True,
        )

    def on_step_end(self, trainer: Trainer, metrics: dict) -> None:
        self.bar.update(1)

    def on_log(self, trainer: Trainer, metrics: dict) -> None:
        self.bar.set_postfix(
            loss=f"{metrics['loss']:.4f}",
            lr=f"{metrics['lr']:.2e}",
            **{f"{self.unit}/s": f"{metrics['tokens_per_sec']:,.0f}"},
        )

    def on_eval_end(self, trainer: Trainer, metrics: dict, improved: bool) -> None:
        best = " (best)" if improved else ""
        measures = [f"val loss {metrics['loss']:.4f}"]
        if "perplexity" in metrics:
            measures.append(f"perplexity {metrics['perplexity']:.2f}")
        if "accuracy" in metrics:
            measures.append(f"accuracy {metrics['accuracy']:.2%}")
        if "macro_f1" in metrics:
            measures.append(f"macro-F1 {metrics['macro_f1']:.4f}")
        if "exact_match" in metrics:
            measures.append(f"exact match {metrics['exact_match']:.2%}")
        self.bar.write(f"step {metrics['step']:>6}: {', '.join(measures)}{best}")

    def on_train_end(self, trainer: Trainer) -> None:
        self.bar.close()


class MetricsLog(Callback):
    """Appends one JSON object a line to metrics.jsonl (train logs and evaluations).

    On resume, lines written after the checkpoint by the interrupted run are dropped, so the
    file reads as one uninterrupted run.
    """

    KEYS = (
        "step",
        "split",
        "loss",
        "perplexity",
        "accuracy",
        "macro_f1",
        "exact_match",
        "lr",
        "grad_norm",
        "tokens_per_sec",
        "elapsed",
    )

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_train_begin(self, trainer: Trainer) -> None:
        if not self.path.exists():
            return
        kept = [
            line
            for line in self.path.read_text().splitlines()
            if line and json.loads(line)["step"] <= trainer.step
        ]
        with atomic_write(self.path, "w") as file:
            file.write("".join(line + "\n" for line in kept))

    def on_log(self, trainer: Trainer, metrics: dict) -> None:
        self._write(metrics)

    def on_eval_end(self, trainer: Trainer, metrics: dict, improved: bool) -> None:
        self._write(metrics)

    def _write(self, metrics: dict) -> None:
        record = {key: _json_number(metrics[key]) for key in self.KEYS if key in metrics}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


class TensorBoard(Callback):
    """Scalars for TensorBoard: train and val loss and perplexity, lr, grad norm, tokens/s."""

    def __init__(self, log_dir: str | Path):
        self.log_dir = Path(log_dir)
        self.writer = None

    def on_train_begin(self, trainer: Trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step hides events an interrupted run logged after its last checkpoint
        self.writer = SummaryWriter(str(self.log_dir), purge_step=trainer.step or None)

    def on_log(self, trainer: Trainer, metrics: dict) -> None:
        step = metrics["step"]
        for key in ("loss", "perplexity"):
            self.writer.add_scalar(f"train/{key}", metrics[key], step)
        self.writer.add_scalar("train/lr", metrics["lr"], step)
        self.writer.add_scalar("train/grad_norm", metrics["grad_norm"], step)
        self.writer.add_scalar("train/tokens_per_sec", metrics["tokens_per_sec"], step)

    def on_eval_end(self, trainer: Trainer, metrics: dict, improved: bool) -> None:
        for key in ("loss", "perplexity", "accuracy", "macro_f1", "exact_match"):
            if key in metrics:
                self.writer.add_scalar(f"val/{key}", metrics[key], metrics["step"])
        self.writer.flush()

    def on_train_end(self, trainer: Trainer) -> None:
        self.writer.close()


class Checkpointer(Callback):
    """After each evaluation: the best weights to model.safetensors when they improved, and the
    full trainer state (to resume from) to trainer_state.pt. Both writes are atomic."""

    def __init__(self, run_dir: str | Path, metadata: dict[str, str] | None = None):
        self.run_dir = Path(run_dir)
        self.metadata = metadata or {}

    def on_train_begin(self, trainer: Trainer) -> None:
        for leftover in self.run_dir.glob(".*.tmp"):  # half-written files of a killed run
            leftover.unlink(missing_ok=True)

    def on_eval_end(self, trainer: Trainer, metrics: dict, improved: bool) -> None:
        if improved:
            save_weights(
                trainer.raw_model,
                self.run_dir / MODEL_FILE,
                {**self.metadata, "step": str(trainer.step)},
            )
        save_trainer_state(self.run_dir / STATE_FILE, trainer.state_dict())

    def on_train_end(self, trainer: Trainer) -> None:
        if trainer.last_eval_step == trainer.step:
            return  # the evaluation at this step already saved everything
        if not trainer.evaluated:  # never evaluated: the last weights are the result
            save_weights(
                trainer.raw_model,
                self.run_dir / MODEL_FILE,
                {**self.metadata, "step": str(trainer.step)},
            )
        save_trainer_state(self.run_dir / STATE_FILE, trainer.state_dict())


class EarlyStopping(Callback):
    """Stops training after `patience` evaluations in a row without a better validation loss."""

    def __init__(self, patience: int):
        self.patience = patience

    def on_eval_end(self, trainer: Trainer, metrics: dict, improved: bool) -> None:
        if trainer.evals_without_improvement >= self.patience:
            trainer.should_stop = True


def _json_number(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def standard_callbacks(
    run_dir: Path, *, is_main: bool, tensorboard: bool, patience: int | None
) -> list[Callback]:
    """What a command that writes a run directory reports to: the main process gets the progress
    bar, metrics.jsonl, checkpoints and TensorBoard; every process gets early stopping (they
    must stop together)."""
    callbacks: list[Callback] = []
    if is_main:
        callbacks += [ProgressBar(), MetricsLog(run_dir / "metrics.jsonl"), Checkpointer(run_dir)]
        if tensorboard:
            callbacks.append(TensorBoard(run_dir / "tensorboard"))
    if patience:
        callbacks.append(EarlyStopping(patience))
    return callbacks
