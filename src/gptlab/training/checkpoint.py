"""Checkpoints that survive a crash: every file is written atomically (`gptlab.atomic`), so at
any moment a path holds either the previous complete file or the new one, never a torn one.

A run directory holds:
    config.json          model and training configs, gptlab version
    model.safetensors    the best weights so far (the last ones when there is no evaluation)
    trainer_state.pt     everything needed to resume: last weights, optimizer, step, RNG, best
                         metric (one file, so the weights and the optimizer can never disagree)
    tokenizer/           the tokenizer's files
    metrics.jsonl        one JSON object per log line
    tensorboard/         TensorBoard event files
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from gptlab.atomic import atomic_path, atomic_write
from gptlab.errors import CheckpointError

MODEL_FILE = "model.safetensors"
STATE_FILE = "trainer_state.pt"
CONFIG_FILE = "config.json"
TOKENIZER_DIR = "tokenizer"


def write_json(path: str | Path, data: dict) -> None:
    with atomic_write(path, "w") as file:
        file.write(json.dumps(data, indent=2) + "\n")


def unique_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with each shared tensor once (safetensors refuses aliases): the tied
    `lm_head.weight` is dropped and restored from `wte.weight` on load."""
    state = model.state_dict()
    aliases = shared_names(state)
    kept: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if not any(other in kept for other in aliases[name]):
            kept[name] = tensor.detach().contiguous()
    return kept


def shared_names(state: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """For each name, the other names of the same tensor (tied weights), often none."""
    groups: dict[tuple, list[str]] = {}
    for name, tensor in state.items():
        pointer = tensor.untyped_storage().data_ptr()
        # Empty and meta tensors all have pointer 0: they share nothing, keep them apart.
        key = (pointer, tensor.storage_offset(), tuple(tensor.shape)) if pointer else (name,)
        groups.setdefault(key, []).append(name)
    return {name: [o for o in group if o != name] for group in groups.values() for name in group}


def saved_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What a checkpoint of `model` holds: every tensor once, or, for a model with an adapter,
    the adapter and the new head only (the base is referenced by the run's config, not copied)."""
    from gptlab.adapters import adapter_state, is_adapted

    return adapter_state(model) if is_adapted(model) else unique_state_dict(model)


def save_weights(
    model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None
) -> None:
    from safetensors.torch import save_file

    state = {name: t.cpu() for name, t in saved_state(model).items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata or {})


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load safetensors weights into `model`; a checkpoint of another shape is a CheckpointError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no weights at {path}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"cannot read {path}: {error}") from error
    load_state_into(model, state, source=str(path))


def load_state_into(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """`model.load_state_dict(state)` with tied weights restored and shape errors made clear; for
    a model with an adapter, `state` is the adapter's (see `saved_state`)."""
    from gptlab.adapters import adapter_state, is_adapted

    expected = adapter_state(model) if is_adapted(model) else model.state_dict()
    aliases = shared_names(expected)
    for name, tensor in expected.items():
        if name not in state and any(other in state for other in aliases[name]):
            continue  # tied to a tensor the checkpoint holds (lm_head to wte): loading it fills both
        if name not in state:
            raise CheckpointError(
                f"{source} has no tensor {name!r}: it is not a checkpoint of this model"
            )
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{source}: {name} has shape {tuple(state[name].shape)}, the model expects {tuple(tensor.shape)}"
            )
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise CheckpointError(
            f"{source} has tensors this model does not: {', '.join(unexpected[:5])}"
        )
    model.load_state_dict(state, strict=False)


def save_trainer_state(path: str | Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_trainer_state(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no {STATE_FILE} in {path.parent}: nothing to resume from")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: torch raises several kinds
        raise CheckpointError(f"cannot read {path}: {error}") from error
