"""Layer normalisation and the position-wise feed-forward network."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def layer_norm(x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float = 1e-5) -> Tensor:
    """The readable reference (Ba et al. 2016): normalise each vector over its last dimension,
    then scale and shift it. The variance is the biased one (divide by C, not C - 1)."""
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    x = (x - mean) / torch.sqrt(var + eps)
    if weight is not None:
        x = x * weight
    if bias is not None:
        x = x + bias
    return x


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (GPT-2 has one; many later models drop it).

    `forward` calls the fused kernel, which computes exactly `layer_norm` above in one pass
    over memory; the tests hold the two equal.
    """

    def __init__(self, n_embd: int, bias: bool = True, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_embd))
        self.bias = nn.Parameter(torch.zeros(n_embd)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class FeedForward(nn.Module):
    """The position-wise MLP: expand 4x, GELU, project back (Vaswani et al. 2017, 3.3).

    GPT-2 uses the tanh approximation of GELU (Hendrycks & Gimpel 2016), so we do too: the
    exact erf form would differ from the released weights' behaviour by ~1e-4.
    """

    def __init__(
        self,
        n_embd: int,
        dropout: float = 0.0,
        bias: bool = True,
        hidden: int | None = None,
        gelu: str = "tanh",
    ):
        """gelu: "tanh" (GPT-2's approximation) or "none" (the exact erf form, BERT's)."""
        super().__init__()
        hidden = 4 * n_embd if hidden is None else hidden
        self.c_fc = nn.Linear(n_embd, hidden, bias=bias)
        self.c_proj = nn.Linear(hidden, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)
        self.gelu = gelu

    def forward(self, x: Tensor) -> Tensor:
        x = F.gelu(self.c_fc(x), approximate=self.gelu)  # (B, T, 4C)
        return self.dropout(self.c_proj(x))  # (B, T, C)
