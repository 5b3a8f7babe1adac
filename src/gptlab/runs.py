"""Run directories: what `gptlab train` writes and `sample`, `eval` and `export` read.

See `gptlab.training.checkpoint` for the files and how they are written.
"""

from __future__ import annotations

import json
from pathlib import Path

from gptlab import __version__
from gptlab.config import GPTConfig
from gptlab.errors import CheckpointError
from gptlab.training.checkpoint import (
    CONFIG_FILE,
    MODEL_FILE,
    STATE_FILE,
    TOKENIZER_DIR,
    write_json,
)


def write_run_config(run_dir: Path, model: GPTConfig, train: dict, data: dict) -> None:
    write_json(
        run_dir / CONFIG_FILE,
        {"gptlab_version": __version__, "model": model.to_dict(), "train": train, "data": data},
    )


def read_run_config(run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if not run_dir.is_dir():
        raise CheckpointError(f"no run directory at {run_dir}")
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not a gptlab run directory: it has no {CONFIG_FILE}")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path} is not valid JSON: {error}") from error
    if "model" not in config:
        raise CheckpointError(
            f"{path} has no 'model' section: is this a Hugging Face folder? (try `gptlab import`)"
        )
    return config


def load_run(run_dir: str | Path, device="cpu", checkpoint: str = "best"):
    """The model (in eval mode), tokenizer and config of a run directory.

    checkpoint: "best" reads model.safetensors (the best weights by validation loss), "last"
    the weights in trainer_state.pt (where training stopped).
    """
    from gptlab.models.gpt import GPT
    from gptlab.tokenizers import load_tokenizer
    from gptlab.training.checkpoint import load_state_into, load_trainer_state, load_weights

    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    model = GPT(GPTConfig.from_dict(config["model"]))
    if checkpoint == "best":
        load_weights(model, run_dir / MODEL_FILE)
    elif checkpoint == "last":
        load_state_into(
            model,
            load_trainer_state(run_dir / STATE_FILE)["model"],
            source=str(run_dir / STATE_FILE),
        )
    else:
        raise CheckpointError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
    tokenizer = load_tokenizer(run_dir / TOKENIZER_DIR)
    return model.to(device).eval(), tokenizer, config
