"""Run directories: what `gptlab train` writes and `sample`, `eval` and `export` read.

See `gptlab.training.checkpoint` for the files and how they are written.
"""

from __future__ import annotations

import dataclasses
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

# An instruction run's model is a GPT, as an lm's; a seq2seq run's is an encoder-decoder
# (gptlab.tasks.seq2seq loads it, with its source and target tokenizers); an mlm run's is a
# MaskedLM (models.encoder).
TASKS = ("lm", "classify", "instruct", "seq2seq", "mlm")


def write_run_config(
    run_dir: Path, model, train: dict, data: dict, task: str = "lm", **sections
) -> None:
    """config.json: the task, the model's shape, how it was trained and on what, and the task's
    own sections (a classifier's `classifier`, a fine-tuning run's `base`)."""
    write_json(
        run_dir / CONFIG_FILE,
        {
            "gptlab_version": __version__,
            "task": task,
            "model": model.to_dict(),
            **sections,
            "train": train,
            "data": data,
        },
    )


def task_sections(model) -> dict:
    """The config.json sections that say what task a built model does (for write_run_config)."""
    from gptlab.models.encoder import Encoder
    from gptlab.pretrained import is_classifier, model_task

    if model_task(model) == "mlm":
        return {"task": "mlm"}
    if is_classifier(model):
        body = {"body": "encoder"} if isinstance(model.transformer, Encoder) else {}
        return {"task": "classify", "classifier": model.head.to_dict(), **body}
    return {"task": "lm"}


def run_task(config: dict) -> str:
    """A run's task: "lm" for language models (and runs written before tasks were recorded)."""
    task = config.get("task", "lm")
    if task not in TASKS:
        raise CheckpointError(
            f"unknown task {task!r} in a run's config (known: {', '.join(TASKS)})"
        )
    return task


def build_model(config: dict):
    """The untrained model a run's config describes: a GPT (lm, instruct), or a GPTClassifier.

    A run with an adapter (an `adapter` section) is its base's weights, checked against the
    checksum recorded in `base`, with a new adapter that the run's weights then fill. A
    quantized run (a `quantization` section) is the model with empty quantized layers, which
    its saved int8/int4 weights fill without quantizing again."""
    from gptlab.models.gpt import GPT

    if run_task(config) == "seq2seq":
        raise CheckpointError(
            "this is an encoder-decoder (seq2seq) run: use `gptlab translate`, `gptlab eval`, "
            "`gptlab info` or `gptlab viz attention` with it"
        )
    if "adapter" in config:
        from gptlab.adapters import load_adapted

        return load_adapted(config)

    if run_task(config) == "mlm":
        from gptlab.config import EncoderConfig
        from gptlab.models.encoder import MaskedLM

        return MaskedLM(EncoderConfig.from_dict(config["model"]))
    if config.get("body") == "encoder":  # a classifier on a masked-language model's encoder
        from gptlab.config import ClassifierConfig, EncoderConfig
        from gptlab.models.classifier import EncoderClassifier
        from gptlab.models.encoder import Encoder

        if run_task(config) != "classify" or "classifier" not in config:
            raise CheckpointError("a run with an encoder body must be a classifier")
        body = Encoder(EncoderConfig.from_dict(config["model"]))
        return EncoderClassifier(body, ClassifierConfig.from_dict(config["classifier"]))
    model = GPT(GPTConfig.from_dict(config["model"]))
    if run_task(config) == "classify":
        from gptlab.config import ClassifierConfig
        from gptlab.models.classifier import GPTClassifier

        if "classifier" not in config:
            raise CheckpointError("a classification run's config has no 'classifier' section")
        model = GPTClassifier(model, ClassifierConfig.from_dict(config["classifier"]))
    if "quantization" in config:
        from gptlab.quantization import QuantConfig, quantized_skeleton

        model = quantized_skeleton(model, QuantConfig.from_dict(config["quantization"]))
    return model


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
    """The model (a GPT or GPTClassifier, in eval mode), tokenizer and config of a run directory.

    checkpoint: "best" reads model.safetensors (the best weights by validation loss), "last"
    the weights in trainer_state.pt (where training stopped).
    """
    from gptlab.tokenizers import load_tokenizer
    from gptlab.training.checkpoint import load_state_into, load_trainer_state, load_weights

    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    model = build_model(config)
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
    if "quantization" in config:
        from gptlab.quantization import QuantConfig, check_method

        check_method(QuantConfig.from_dict(config["quantization"]), device)
    tokenizer = load_tokenizer(run_dir / TOKENIZER_DIR)
    return model.to(device).eval(), tokenizer, config


def shaped_like(body, config: GPTConfig):
    """The GPT `body` with the dropout and (cropped) context of `config`, a fine-tuning run's
    model; any other difference means the run was not made from this body."""
    from gptlab.models.gpt import GPT

    current = body.config
    if (
        dataclasses.replace(current, dropout=config.dropout, context_length=config.context_length)
        != config
    ):
        raise CheckpointError("the base model's shape differs from the one the run was made from")
    if current.dropout != config.dropout:  # dropout rates are fixed when modules are built
        state = body.state_dict()
        body = GPT(dataclasses.replace(current, dropout=config.dropout))
        body.load_state_dict(state)
    if current.context_length != config.context_length:
        body.crop_context(config.context_length)
    return body
