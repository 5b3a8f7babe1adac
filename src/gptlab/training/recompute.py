"""Activation checkpointing: trade compute for memory by recomputing each block in backward.

Backpropagation needs every intermediate activation of the forward pass. For a GPT they grow
with batch x context x width x layers and, at long contexts, dwarf the weights. Checkpointing
a block keeps only its input: backward runs the block's forward again to get the rest
(Chen et al. 2016, "Training deep nets with sublinear memory cost"). Memory per block falls to
one (B, T, C) tensor; the cost is one more forward per block, about a third more compute.

Applied from outside, as LoRA is: each block's `forward` is replaced on the instance, so its
parameters, names and state dict do not change and a checkpoint loads with or without it.
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from gptlab.errors import ConfigError
from gptlab.nn.blocks import DecoderBlock, EncoderBlock, GPTBlock

BLOCKS = (GPTBlock, EncoderBlock, DecoderBlock)  # the units recomputed in backward


def checkpoint_blocks(model: nn.Module) -> int:
    """Recompute every Transformer block of `model` in backward; returns how many there are."""
    blocks = [module for module in model.modules() if isinstance(module, BLOCKS)]
    if not blocks:
        raise ConfigError(
            f"activation checkpointing needs Transformer blocks, and {type(model).__name__} "
            "has none"
        )
    for block in blocks:
        if getattr(block.forward, "recomputed", False):
            continue  # applied once already
        block.forward = _recomputed(block.forward)
    return len(blocks)


def _recomputed(forward):
    @functools.wraps(forward)
    def wrapper(*args, **kwargs):
        if not torch.is_grad_enabled():
            return forward(*args, **kwargs)  # evaluation and decoding: nothing to save
        # use_reentrant=False: the variant PyTorch recommends, which torch.compile traces and
        # which works with keyword arguments and inputs that need no gradient.
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    wrapper.recomputed = True
    return wrapper
