"""Token embeddings and the two kinds of positional encoding.

Attention by itself is blind to order: permuting the tokens permutes the outputs. A positional
encoding, added to the token embeddings, is what tells the model where each token stands.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class TokenEmbedding(nn.Embedding):
    """A lookup table from token id to vector: row `i` of `weight` is the vector of token `i`.

    `scale=True` multiplies by sqrt(C) as in the original Transformer (Vaswani et al. 2017,
    3.4), which keeps embeddings and sinusoidal encodings of similar size; GPT-2 does not.
    """

    def __init__(self, vocab_size: int, n_embd: int, scale: bool = False):
        super().__init__(vocab_size, n_embd)
        self.scale = math.sqrt(n_embd) if scale else 1.0

    def forward(self, idx: Tensor) -> Tensor:
        x = super().forward(idx)  # (B, T) -> (B, T, C)
        return x * self.scale if self.scale != 1.0 else x


class LearnedPositionalEmbedding(nn.Embedding):
    """One trained vector per position, GPT-2's `wpe`; it cannot go past `context_length`."""

    def __init__(self, context_length: int, n_embd: int):
        super().__init__(context_length, n_embd)

    def crop(self, context_length: int) -> None:
        """Keep the first `context_length` positions (for a model used on shorter contexts).

        The Parameter object stays the same, so an optimizer built before the crop trains the
        cropped weights; only its data (and gradient, if any) shrink. Crop before the first
        optimizer step: Adam's moments would keep the old shape.
        """
        # `.data`, not a new nn.Parameter: optimizers hold parameters by reference. The clone
        # frees the rows cropped away, which a view would keep alive.
        self.weight.data = self.weight.data[:context_length].clone()
        if self.weight.grad is not None:  # else the next backward fails on the old, longer grad
            self.weight.grad = self.weight.grad[:context_length].clone()
        self.num_embeddings = context_length


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sines and cosines of geometrically spaced frequencies (Vaswani et al. 2017, 3.5).

    PE[pos, 2i] = sin(pos / 10000^(2i/C)), PE[pos, 2i+1] = cos(pos / 10000^(2i/C)). Nothing is
    learned, and PE[pos + k] is a linear function of PE[pos], which lets attention find relative
    offsets. The table is a non-persistent buffer: it is recomputed, never saved.
    """

    def __init__(self, context_length: int, n_embd: int, base: float = 10000.0):
        super().__init__()
        if n_embd % 2:
            raise ValueError(f"sinusoidal encodings need an even width, got {n_embd}")
        position = torch.arange(context_length, dtype=torch.float32)[:, None]  # (T, 1)
        inv_freq = base ** (-torch.arange(0, n_embd, 2, dtype=torch.float32) / n_embd)  # (C/2,)
        table = torch.zeros(context_length, n_embd)
        table[:, 0::2] = torch.sin(position * inv_freq)
        table[:, 1::2] = torch.cos(position * inv_freq)
        self.register_buffer("table", table, persistent=False)

    @property
    def num_embeddings(self) -> int:
        return self.table.size(0)

    def forward(self, pos: Tensor) -> Tensor:
        return self.table[pos]  # (..., T) -> (..., T, C)

    def crop(self, context_length: int) -> None:
        self.table = self.table[:context_length]
