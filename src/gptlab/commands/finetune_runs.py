"""What every `gptlab finetune TASK` does the same way: read its flags, start a new run
directory or resume one of its own task."""

from __future__ import annotations

import argparse
from pathlib import Path

from gptlab.errors import ConfigError

# How an error names a task's runs.
RUN_NAMES = {
    "classify": "a classification",
    "lm": "a domain fine-tuning",
    "instruct": "an instruction",
}


def given_settings(args: argparse.Namespace) -> dict:
    """The flags given (the others are absent or None), with MODEL or --resume, not both."""
    settings = {
        key: value
        for key, value in vars(args).items()
        if key not in ("run", "command", "no_tensorboard") and value is not None
    }
    if "resume" in settings:
        if "model" in settings:
            raise ConfigError("give MODEL or --resume RUN_DIR, not both")
    elif "model" not in settings:
        raise ConfigError("name the pretrained MODEL to fine-tune (e.g. gpt2, or a run directory)")
    return settings


def resumed_config(run_dir: Path, task: str, changed: dict) -> dict:
    """The config.json of the fine-tuning run of `task` in `run_dir`; `changed` holds the
    settings given besides training ones, of which only --epochs may change on resume."""
    from gptlab.runs import read_run_config, run_task

    saved = read_run_config(run_dir)
    if "finetune" not in saved or run_task(saved) != task:
        raise ConfigError(f"{run_dir} is not {RUN_NAMES[task]} run: resume it with its own command")
    if set(changed) - {"epochs"}:
        raise ConfigError(
            "--resume continues a run as it was: only training settings (e.g. --max-iters) may change"
        )
    return saved


def new_run_dir(settings: dict, default: str) -> Path:
    """--out (or `default`), which must not hold a run already: that one is resumed, not replaced."""
    from gptlab.training.checkpoint import STATE_FILE

    run_dir = Path(settings.get("out", default))
    if (run_dir / STATE_FILE).exists():
        raise ConfigError(
            f"{run_dir} already holds a run: resume it with --resume {run_dir}, or choose another --out"
        )
    return run_dir


def run_steps(settings: dict, train_values: dict, batches, epochs: float) -> int:
    """A run's length: --max-iters, else --epochs of `batches`; a resumed run keeps the length
    it was started with (in `train_values`) unless one of them is given again."""
    if "max_iters" in settings or ("resume" in settings and "epochs" not in settings):
        return train_values["max_iters"]
    return batches.steps_for(epochs)
