"""Transformer blocks: the encoder and decoder blocks of the original Transformer, and GPT's.

Each block is sublayers (attention, feed-forward) wrapped in residual connections with layer
normalisation. Where the norm goes matters: post-LN (Vaswani et al. 2017) normalises after
adding the residual; pre-LN (GPT-2, Radford et al. 2019, 2.3) normalises the sublayer's input
and leaves the residual path untouched, which trains deep stacks without warmup tricks
(Xiong et al. 2020).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from gptlab.nn.attention import KVCache, MultiHeadAttention
from gptlab.nn.layers import FeedForward, LayerNorm


class AddNorm(nn.Module):
    """A residual connection around a sublayer, with LayerNorm before (pre-LN) or after (post-LN).

    pre-LN:  x + dropout(sublayer(norm(x)))
    post-LN: norm(x + dropout(sublayer(x)))
    """

    def __init__(
        self,
        n_embd: int,
        dropout: float = 0.0,
        pre_norm: bool = True,
        bias: bool = True,
        eps: float = 1e-5,
    ):
        super().__init__()
        self.pre_norm = pre_norm
        self.norm = LayerNorm(n_embd, bias=bias, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, sublayer: Callable[[Tensor], Tensor]) -> Tensor:
        if self.pre_norm:
            return x + self.dropout(sublayer(self.norm(x)))
        return self.norm(x + self.dropout(sublayer(x)))


class EncoderBlock(nn.Module):
    """Self-attention over the whole sequence (no look-ahead mask), then feed-forward.

    With `pre_norm=False` this is BERT's layer (Devlin et al. 2019, which kept the original
    Transformer's post-LN); `eps` and `gelu` ("tanh" or "none", the exact erf form BERT uses)
    let it match a given checkpoint's numbers."""

    def __init__(
        self,
        n_embd: int,
        n_head: int,
        dropout: float = 0.0,
        pre_norm: bool = True,
        bias: bool = True,
        ff_hidden: int | None = None,
        eps: float = 1e-5,
        gelu: str = "tanh",
    ):
        """ff_hidden: the feed-forward's inner width (default 4 * n_embd)."""
        super().__init__()
        self.self_attn = MultiHeadAttention(n_embd, n_head, dropout=0.0, bias=bias)
        self.mlp = FeedForward(n_embd, dropout=0.0, bias=bias, hidden=ff_hidden, gelu=gelu)
        self.attn_norm = AddNorm(n_embd, dropout, pre_norm, bias, eps)
        self.mlp_norm = AddNorm(n_embd, dropout, pre_norm, bias, eps)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (B, S, C); mask: (B, 1, 1, S) padding mask, True on real tokens."""
        x = self.attn_norm(x, lambda h: self.self_attn(h, mask=mask))
        return self.mlp_norm(x, self.mlp)


class DecoderBlock(nn.Module):
    """Masked self-attention, cross-attention to the encoder's output, then feed-forward."""

    def __init__(
        self,
        n_embd: int,
        n_head: int,
        dropout: float = 0.0,
        pre_norm: bool = True,
        bias: bool = True,
        ff_hidden: int | None = None,
    ):
        """ff_hidden: the feed-forward's inner width (default 4 * n_embd)."""
        super().__init__()
        self.self_attn = MultiHeadAttention(n_embd, n_head, dropout=0.0, bias=bias)
        self.cross_attn = MultiHeadAttention(n_embd, n_head, dropout=0.0, bias=bias)
        self.mlp = FeedForward(n_embd, dropout=0.0, bias=bias, hidden=ff_hidden)
        self.self_attn_norm = AddNorm(n_embd, dropout, pre_norm, bias)
        self.cross_attn_norm = AddNorm(n_embd, dropout, pre_norm, bias)
        self.mlp_norm = AddNorm(n_embd, dropout, pre_norm, bias)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        *,
        kv_cache: KVCache | None = None,
        input_pos: Tensor | None = None,
        memory_kv: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """x: (B, T, C) target so far; memory: (B, S, C) encoder output.

        self_mask: (B, 1, T, T) look-ahead and target padding; None means look-ahead only.
        memory_mask: (B, 1, 1, S) source padding.
        For decoding: `kv_cache` and `input_pos` (T,) keep the self-attention's past keys and
        values (self_mask must then hide the cache slots not written yet), and `memory_kv`, the
        cross-attention's keys and values from `memory_kv()`, stands in for `memory`.
        """
        x = self.self_attn_norm(
            x,
            lambda h: self.self_attn(
                h,
                mask=self_mask,
                is_causal=self_mask is None,
                kv_cache=kv_cache,
                input_pos=input_pos,
            ),
        )
        x = self.cross_attn_norm(
            x,
            lambda h: self.cross_attn(h, context=memory, mask=memory_mask, context_kv=memory_kv),
        )
        return self.mlp_norm(x, self.mlp)

    def memory_kv(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """The cross-attention's keys and values of the encoder output (B, S, C): they do not
        change while the target grows, so a decoder computes them once per source."""
        return self.cross_attn.context_kv(memory)


class GPTBlock(nn.Module):
    """GPT-2's block: pre-LN causal self-attention and feed-forward, each on a residual path.

    The attributes carry GPT-2's names (ln_1, attn, ln_2, mlp) so that a Hugging Face state
    dict maps onto it one to one; the residual dropout sits inside `attn` and `mlp` as in GPT-2.
    """

    def __init__(
        self,
        n_embd: int,
        n_head: int,
        dropout: float = 0.0,
        bias: bool = True,
        eps: float = 1e-5,
        gelu: str = "tanh",
    ):
        """gelu: "tanh" (GPT-2's approximation) or "none" (the exact erf form)."""
        super().__init__()
        self.ln_1 = LayerNorm(n_embd, bias=bias, eps=eps)
        self.attn = MultiHeadAttention(n_embd, n_head, dropout=dropout, bias=bias)
        self.ln_2 = LayerNorm(n_embd, bias=bias, eps=eps)
        self.mlp = FeedForward(n_embd, dropout=dropout, bias=bias, gelu=gelu)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        kv_cache: KVCache | None = None,
        input_pos: Tensor | None = None,
    ) -> Tensor:
        """x: (B, T, C); mask: bool (B or 1, 1, T, S), or None for the plain look-ahead mask."""
        x = x + self.attn(
            self.ln_1(x), mask=mask, is_causal=mask is None, kv_cache=kv_cache, input_pos=input_pos
        )
        return x + self.mlp(self.ln_2(x))
