"""Which parameters of a pretrained model train during fine-tuning.

Freezing is applied to a built model from outside, by switching `requires_grad`: the optimizer
only receives the parameters that train (`gptlab.training.optim.param_groups`), and autograd
stops at the first layer that needs no gradient, so a frozen body costs a forward pass only.

The policies, from cheapest to most thorough:

- `head`: the new head alone (a linear probe of the pretrained features);
- `last-block`: the last transformer block, the final LayerNorm and the head, as the reference
  fine-tunes GPT-2 for spam (Raschka 2024, chapter 6);
- `last-N`: the last N blocks, the final LayerNorm and the head;
- `all`: every parameter.
"""

from __future__ import annotations

import re

from torch import nn

from gptlab.errors import ConfigError

POLICIES = ("head", "last-block", "last-N", "all")
_LAST_N = re.compile(r"last-(\d+)")


def blocks_to_train(policy: str, n_layer: int) -> int:
    """How many of the last blocks a policy trains (n_layer for `all`)."""
    if policy == "all":
        return n_layer
    if policy == "head":
        return 0
    if policy == "last-block":
        return 1
    match = _LAST_N.fullmatch(policy)
    if match is None:
        raise ConfigError(
            f"unknown training policy {policy!r}: use head, last-block, last-N (e.g. last-2) or all"
        )
    n = int(match.group(1))
    if not 1 <= n <= n_layer:
        raise ConfigError(f"{policy}: the model has {n_layer} blocks, so N must be in 1..{n_layer}")
    return n


def freeze(model: nn.Module, policy: str) -> tuple[int, int]:
    """Let only the parameters `policy` names train; return (trainable, total) parameter counts.

    `model` is a model with a GPT body at `model.transformer` and a head beside it (a
    `GPTClassifier`), or a GPT itself, whose head is tied to its embedding (then `head` alone
    trains nothing and is refused).
    """
    body = getattr(model, "transformer", model)
    n = blocks_to_train(policy, len(body.h))
    if policy == "all":
        for param in model.parameters():
            param.requires_grad_(True)
    else:
        for param in model.parameters():
            param.requires_grad_(False)
        body_params = {id(p) for p in body.parameters()}
        for param in model.parameters():
            if id(param) not in body_params:
                param.requires_grad_(True)  # the head
        if n:
            for block in body.h[len(body.h) - n :]:
                block.requires_grad_(True)
            if hasattr(body, "ln_f"):  # a post-LN encoder's norms are inside its blocks
                body.ln_f.requires_grad_(True)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    if trainable == 0:
        raise ConfigError(f"the policy {policy!r} leaves nothing to train in this model")
    return trainable, total
