"""Looking inside a GPT: named activations through hooks, and the analyses built on them.

- `run_with_cache`, `run_with_edits`, `hooked` (`hooks`): read and edit activations by name;
"""

from gptlab.interpret.hooks import (
    ActivationCache,
    activation_names,
    head_results,
    hooked,
    mean_heads,
    patch_heads,
    patch_positions,
    remove_direction,
    run_with_cache,
    run_with_edits,
    zero_heads,
)

__all__ = [
    "ActivationCache",
    "activation_names",
    "head_results",
    "hooked",
    "mean_heads",
    "patch_heads",
    "patch_positions",
    "remove_direction",
    "run_with_cache",
    "run_with_edits",
    "zero_heads",
]
