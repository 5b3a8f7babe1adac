"""An adapted model: a frozen base with LoRA or a soft prompt, saved apart from the base.

What a fine-tuning run with an adapter needs beyond the adapter itself:

- `attach` puts either kind on a GPT or a GPTClassifier; `freeze_base` lets only the adapter and
  a classifier's new head train;
- `adapter_state` is what its checkpoints hold: the adapter's tensors and the new head, never
  the base (a LoRA run of GPT-2 124M saves a few MB, not 500);
- `base_checksum` fingerprints the base's weights, so loading an adapter on another base fails
  with a clear error instead of quietly giving nonsense;
- `load_adapted` rebuilds a run's model: its base (from the name or path recorded in its
  config, checked against the checksum), its head, its adapter.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import torch
from torch import Tensor, nn

from gptlab.adapters.config import LoRAConfig, PromptTuningConfig, adapter_config
from gptlab.adapters.lora import LoRALayer, add_lora
from gptlab.adapters.prompt import PromptTuned
from gptlab.errors import CheckpointError

HEAD_PREFIX = "score."  # a classifier's head: new in every classification run, so always saved


def attach(model: nn.Module, config: LoRAConfig | PromptTuningConfig, tokenizer=None):
    """`model` (a GPT or GPTClassifier) with the adapter `config` describes; for a prompt on a
    language model the result is a new module (a `PromptTuned`), so use the return value."""
    if isinstance(config, LoRAConfig):
        add_lora(model, config)
        return model
    if hasattr(model, "transformer"):  # a classifier: the prompt goes before its body's input
        model.transformer = PromptTuned(model.transformer, config, tokenizer)
        return model
    return PromptTuned(model, config, tokenizer)


def adapter_kind(model: nn.Module) -> str | None:
    """ "lora", "prompt", or None for a plain model."""
    for module in model.modules():
        if isinstance(module, PromptTuned):
            return "prompt"
        if isinstance(module, LoRALayer):
            return "lora"
    return None


def is_adapted(model: nn.Module) -> bool:
    return adapter_kind(model) is not None


def base_config(model: nn.Module):
    """The GPTConfig of the model's own GPT, whatever wraps it (a prompt's wrapper reports the
    context left after the prompt; a run's config records the GPT's)."""
    body = getattr(model, "transformer", model)
    return getattr(body, "gpt", body).config


def _is_adapter_tensor(name: str) -> bool:
    return ".lora." in name or name.endswith("wte.prompt")


def freeze_base(model: nn.Module) -> tuple[int, int]:
    """Only the adapter, and a classifier's new head unless LoRA adapts it, train; returns
    (trainable, total) parameter counts."""
    head_adapted = any(name.startswith(HEAD_PREFIX) for name in _adapter_names(model))
    for name, param in model.named_parameters():
        is_head = name.startswith(HEAD_PREFIX) and not head_adapted
        param.requires_grad_(_is_adapter_tensor(name) or is_head)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def _adapter_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_parameters() if _is_adapter_tensor(name)]


def adapter_state(model: nn.Module) -> dict[str, Tensor]:
    """The tensors an adapter run saves: the adapter's and a classifier's head."""
    return {
        name: tensor.detach().contiguous()
        for name, tensor in model.state_dict().items()
        if _is_adapter_tensor(name) or name.startswith(HEAD_PREFIX)
    }


def base_checksum(model: nn.Module) -> str:
    """sha256 of a model's own weights (names, dtypes, shapes and values), each tensor once;
    adapter tensors, if any are attached, are not the base's and are left out."""
    from gptlab.training.checkpoint import unique_state_dict

    digest = hashlib.sha256()
    for name, tensor in sorted(unique_state_dict(model).items()):
        if _is_adapter_tensor(name):
            continue
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def base_record(info: dict, body: nn.Module, adapter=None) -> dict:
    """The `base` section of a fine-tuning run: where its base came from; for a run with an
    adapter, which refers to its base instead of copying it, its absolute path and checksum."""
    record = {"source": info["source"], "kind": info["kind"]}
    if adapter is None:
        return record
    if info["kind"] in ("run", "hf-folder"):
        record["path"] = str(Path(info["source"]).expanduser().resolve())
    record["sha256"] = base_checksum(body)
    return record


def load_base(base: dict):
    """(body GPT, tokenizer) of an adapter run's base, checked against its checksum."""
    from gptlab.pretrained import load_model

    spec = base["source"]
    if base.get("kind") in ("run", "hf-folder") and not Path(spec).expanduser().exists():
        spec = base.get("path", spec)  # the run was made elsewhere: the absolute path
        if not Path(spec).exists():
            raise CheckpointError(
                f"the base model of this adapter run is not found at {base['source']} nor at "
                f"{spec}: put it back there, or merge the run where the base is (gptlab merge)"
            )
    model, tokenizer, _ = load_model(spec)
    body = getattr(model, "transformer", model)
    expected = base.get("sha256")
    if expected is not None and base_checksum(body) != expected:
        raise CheckpointError(
            f"{spec} is not the base this adapter was trained on: its weights' sha256 is "
            f"{base_checksum(body)[:12]}..., the adapter expects {expected[:12]}..."
        )
    return body, tokenizer


def load_adapted(config: dict):
    """The model of an adapter run's config: base (checked), head and a new adapter, ready for
    the run's saved adapter state to be loaded into it."""
    from gptlab.config import GPTConfig
    from gptlab.runs import shaped_like

    body, tokenizer = load_base(config["base"])
    body = shaped_like(body, GPTConfig.from_dict(config["model"]))
    model = body
    if config.get("task") == "classify":
        from gptlab.config import ClassifierConfig
        from gptlab.models.classifier import GPTClassifier

        model = GPTClassifier(body, ClassifierConfig.from_dict(config["classifier"]))
    settings = adapter_config(config["adapter"])
    if isinstance(settings, PromptTuningConfig):
        # the saved prompt replaces the initial one: no need for the init text's tokens
        settings = dataclasses.replace(settings, init="random")
    return attach(model, settings, tokenizer)
