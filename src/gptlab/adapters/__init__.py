"""Adapters: fine-tune a frozen model through a few new parameters, kept apart from its weights.

- `lora`: low-rank updates of chosen Linear layers (merge, unmerge, several adapters);
- `prompt`: prompt tuning, trained virtual-token embeddings before the input;
- `adapted`: an adapted model in a run directory (what trains, what is saved, the base's checksum);
- `peft_format`: to and from the files of Hugging Face's peft.

Every one is applied to a built model from outside: `gptlab.models` knows nothing of them.
"""

from gptlab.adapters.adapted import (
    adapter_kind,
    adapter_state,
    attach,
    base_checksum,
    freeze_base,
    is_adapted,
    load_adapted,
)
from gptlab.adapters.config import LoRAConfig, PromptTuningConfig, adapter_config
from gptlab.adapters.lora import (
    adapter_names,
    add_lora,
    merge_lora,
    merged_model,
    remove_lora,
    set_adapter,
    unmerge_lora,
)
from gptlab.adapters.prompt import PromptTuned

__all__ = [
    "LoRAConfig",
    "PromptTuned",
    "PromptTuningConfig",
    "adapter_config",
    "adapter_kind",
    "adapter_names",
    "adapter_state",
    "add_lora",
    "attach",
    "base_checksum",
    "freeze_base",
    "is_adapted",
    "load_adapted",
    "merge_lora",
    "merged_model",
    "remove_lora",
    "set_adapter",
    "unmerge_lora",
]
