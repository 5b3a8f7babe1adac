"""Scaled dot-product attention, its masks, and multi-head attention with a KV cache.

Masks are boolean and say where attention is *allowed*: `mask[..., t, s]` is True when query t
may look at key s. That is the convention of `F.scaled_dot_product_attention`, so a mask built
here goes straight to the fast path.

Shapes: B batch, T queries, S keys, nh heads, hs head size, C = nh * hs channels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, dropout: float = 0.0
) -> tuple[Tensor, Tensor]:
    """The readable reference: softmax(q k^T / sqrt(hs)) v, returning outputs and weights.

    q: (..., T, hs), k and v: (..., S, hs), mask: bool broadcastable to (..., T, S).
    A row of the mask with no True gives NaN weights; the builders below never make one.
    """
    weights = attention_pattern(q, k, mask)  # (..., T, S)
    if dropout > 0.0:
        weights = F.dropout(weights, p=dropout)
    return weights @ v, weights  # (..., T, hs), (..., T, S)


def attention_pattern(q: Tensor, k: Tensor, mask: Tensor | None = None) -> Tensor:
    """The attention weights softmax(q k^T / sqrt(hs)), (..., T, S): where each query looks.

    The fast path (`F.scaled_dot_product_attention`) never materialises them; this is how
    `attention()` and the interpretability hooks (`gptlab.interpret`) get them.
    """
    # Scaling q rather than the scores, and masking in place, touch the (T, S) scores twice
    # fewer times: what a pattern costs at 1024 tokens is mostly memory traffic.
    scores = (q / math.sqrt(q.size(-1))) @ k.transpose(-2, -1)  # (..., T, S)
    if mask is not None:
        scores.masked_fill_(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1)


def causal_mask(num_queries: int, num_keys: int | None = None, device=None) -> Tensor:
    """The look-ahead mask, (T, S): query t may see keys up to its own position.

    With more keys than queries (decoding after a prompt) the queries are the last T positions.
    """
    num_keys = num_queries if num_keys is None else num_keys
    return torch.ones(num_queries, num_keys, dtype=torch.bool, device=device).tril(
        num_keys - num_queries
    )


def padding_mask_from_lengths(lengths: Tensor, max_length: int, side: str = "right") -> Tensor:
    """(B, S) True on real tokens, for sequences padded on the `side` ("right" or "left")."""
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    positions = torch.arange(max_length, device=lengths.device)  # (S,)
    if side == "right":
        return positions[None, :] < lengths[:, None]
    return positions[None, :] >= (max_length - lengths)[:, None]


def padding_mask_from_ids(ids: Tensor, pad_id: int) -> Tensor:
    """(B, S) True on real tokens, False where `ids` holds the padding id (either side)."""
    return ids != pad_id


def attention_mask(causal: Tensor | None = None, padding: Tensor | None = None) -> Tensor:
    """Combine a (T, S) look-ahead mask and a (B, S) key padding mask into (B, 1, T, S).

    A query that may see no key at all (a left-padding position under a causal mask) is allowed
    to see every key instead: its output is never used, but an all-False row would make the
    softmax NaN, and NaN values leak into later layers through masked-out keys (0 * NaN = NaN).
    """
    if causal is None and padding is None:
        raise ValueError("attention_mask needs a causal mask, a padding mask, or both")
    mask = torch.ones((), dtype=torch.bool) if causal is None else causal
    mask = mask.to(padding.device) if padding is not None else mask
    if padding is not None:
        mask = mask & padding[:, None, None, :]  # (B, 1, T, S)
    while mask.dim() < 4:
        mask = mask.unsqueeze(0)
    return mask | ~mask.any(dim=-1, keepdim=True)


class KVCache(nn.Module):
    """Keys and values of past positions for one attention layer, preallocated.

    A fixed-size buffer indexed by position (as in gpt-fast) keeps every decode step the same
    shape, which is what `torch.compile` and CUDA graphs need; the attention mask hides the
    slots not written yet. Attention reads only the first `visible` slots (all of them unless
    a decoder says otherwise): a decoder that raises it in a few steps (64, 128, 256, ...) as
    the sequence grows reads little of the cache early on, at the price of one compiled step
    per size.
    """

    def __init__(
        self, batch_size: int, max_length: int, n_head: int, head_size: int, dtype=None, device=None
    ):
        super().__init__()
        shape = (batch_size, n_head, max_length, head_size)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.visible = max_length  # the slots attention reads: 0 .. visible - 1

    @property
    def max_length(self) -> int:
        return self.k.size(2)

    def update(self, input_pos: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write k, v (B, nh, T, hs) at slots `input_pos` (T,); return the visible slots."""
        self.k.index_copy_(2, input_pos, k.to(self.k.dtype))
        self.v.index_copy_(2, input_pos, v.to(self.v.dtype))
        return self.k[:, :, : self.visible], self.v[:, :, : self.visible]  # (B, nh, S, hs)


class MultiHeadAttention(nn.Module):
    """Multi-head attention for self- and cross-attention (Vaswani et al. 2017, 3.2.2).

    One fused projection `c_attn` makes queries, keys and values (GPT-2's layout); for
    cross-attention its query third is applied to `x` and its key/value thirds to `context`.
    The products go through `F.scaled_dot_product_attention`, which picks a flash or
    memory-efficient kernel where it can; `attention()` above is the reference it must equal.
    """

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
        self.n_head = n_head
        self.n_embd = n_embd
        self.dropout = dropout
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        mask: Tensor | None = None,
        is_causal: bool = False,
        kv_cache: KVCache | None = None,
        input_pos: Tensor | None = None,
        context_kv: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """x: (B, T, C); context: (B, S, C) for cross-attention; mask: bool, broadcastable to
        (B, nh, T, S); `is_causal` asks for the look-ahead mask without building it; with a
        `kv_cache`, the new keys and values are written at `input_pos` (T,) and the queries
        attend over the cache's visible slots, so `mask` must then hide those not to be seen.
        context_kv: the context's keys and values from `context_kv()`, in place of `context`:
        a decoder computes them once per source rather than at every step."""
        B, T, C = x.shape
        if context is None and context_kv is None:  # self-attention: one fused projection
            q, k, v = (self._split_heads(t) for t in self.c_attn(x).split(self.n_embd, dim=2))
        else:  # cross-attention: queries from x, keys and values from the context
            q = self._split_heads(self._project_queries(x))  # (B, nh, T, hs)
            k, v = context_kv if context_kv is not None else self.context_kv(context)
        if kv_cache is not None:
            k, v = kv_cache.update(input_pos, k, v)  # (B, nh, S visible, hs)
        if q.device.type == "cpu" and q.dtype == torch.bfloat16:
            # The CPU's bfloat16 attention kernel is the slow one: its backward took 22.8 ms
            # against 2.0 ms in float32 for the CPU preset's (12, 4, 64, 32) heads (torch 2.15,
            # one thread), while the matrix products around it gain from bfloat16 (AMX). So
            # attention runs in float32 there, out of autocast's reach (which would cast back).
            with torch.autocast("cpu", enabled=False):
                y = self._attend(q.float(), k.float(), v.float(), mask, is_causal).to(q.dtype)
        else:
            y = self._attend(q, k, v, mask, is_causal)  # (B, nh, T, hs)
        # re-assemble all head outputs side by side
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool):
        return F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal and mask is None,
        )  # (B, nh, T, hs)

    def context_kv(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """The keys and values of a cross-attention context (B, S, C), each (B, nh, S, hs)."""
        w_kv = self.c_attn.weight[self.n_embd :]
        b_kv = None if self.c_attn.bias is None else self.c_attn.bias[self.n_embd :]
        k, v = F.linear(context, w_kv, b_kv).split(self.n_embd, dim=2)  # (B, S, C) each
        return self._split_heads(k), self._split_heads(v)

    def _split_heads(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        return x.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)

    def _project_queries(self, x: Tensor) -> Tensor:
        w_q = self.c_attn.weight[: self.n_embd]
        b_q = None if self.c_attn.bias is None else self.c_attn.bias[: self.n_embd]
        return F.linear(x, w_q, b_q)  # (B, T, C)
