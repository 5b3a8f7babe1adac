"""Looking inside a GPT: named activations through hooks, and the analyses built on them.

- `hooks`: `run_with_cache`, `run_with_edits`, `hooked` read and edit activations by name
  (`blocks.3.attn.pattern`, `blocks.3.resid_post`, ...), and the usual edits (`zero_heads`,
  `mean_heads`, `patch_positions`, `patch_heads`, `remove_direction`);
- `lens`: the logit lens, the stream after each layer read by the final LayerNorm and head;
- `heads`: previous-token, first-token and induction scores of every head, and a trainer
  callback that records them through training;
- `attribution`: direct logit attribution of each head and MLP to a token;
- `patching`: activation patching between a clean and a corrupted prompt, and head ablation.

Each analysis returns its numbers (a dataclass with `to_dict`) and has a figure function;
`gptlab inspect` runs them from the command line.
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
