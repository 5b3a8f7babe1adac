"""Adapters: fine-tune a frozen model through a few new parameters, kept apart from its weights.

- `lora`: low-rank updates of chosen Linear layers (merge, unmerge, several adapters);
- `prompt`: prompt tuning, trained virtual-token embeddings before the input;
- `adapted`: an adapted model in a run directory (what trains, what is saved, the base's checksum);
- `peft_format`: to and from the files of Hugging Face's peft.

Every one is applied to a built model from outside: `gptlab.models` knows nothing of them.
"""

from __future__ import annotations

from gptlab.lazy import lazy_names

# Public name -> the module of this package that defines it, imported on first access (PEP 562):
# the command line's parsers read `gptlab.adapters.config` without importing torch.
_LAZY_NAMES = {
    "adapter_kind": ".adapted",
    "adapter_state": ".adapted",
    "attach": ".adapted",
    "base_checksum": ".adapted",
    "freeze_base": ".adapted",
    "is_adapted": ".adapted",
    "load_adapted": ".adapted",
    "LoRAConfig": ".config",
    "PromptTuningConfig": ".config",
    "adapter_config": ".config",
    "adapter_names": ".lora",
    "add_lora": ".lora",
    "merge_lora": ".lora",
    "merged_model": ".lora",
    "remove_lora": ".lora",
    "set_adapter": ".lora",
    "unmerge_lora": ".lora",
    "PromptTuned": ".prompt",
}

__all__ = sorted(_LAZY_NAMES)


__getattr__, __dir__ = lazy_names(__name__, _LAZY_NAMES)
