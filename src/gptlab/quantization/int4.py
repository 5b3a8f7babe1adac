"""int4 weight-only quantization, group-wise and asymmetric: half of int8's bytes again.

Sixteen levels are too few for one scale to span a whole row, so the row is cut into groups
of `group_size` input features, and each group gets its own scale and zero point
(asymmetric: a group's values need not be centred on zero, so all 16 levels cover [min, max]):

    scale = (max - min) / 15      zero = round(-min / scale)  in [0, 15]
    q = clamp(round(w / scale) + zero, 0, 15)          w ≈ (q - zero) · scale

The zero point is an integer, so 0.0 is exactly representable (q = zero); min and max are
then reached within half a step, and every value is within scale / 2 of its dequantized self.
Two 4-bit codes share one byte: the even input feature in the low nibble, the odd one in the
high nibble. This is the format of GPTQ and AWQ checkpoints, in its plainest layout.

`Int4Linear.forward` dequantizes the whole weight and multiplies: readable, not fast. The fast
path, the CUDA tinygemm kernel `torch._weight_int4pack_mm`, wants its own tiled packing
(`torch._convert_weight_to_int4pack`) and scales and zeros as one (groups, out, 2) tensor in
bf16 with a float zero (w = (q - 8) · scale + zero'); it belongs in `Int4Linear.forward` behind
a device check, converting from the codes stored here, so the saved format stays this one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

QMAX = 15  # unsigned 4 bits: codes 0..15


def quantize_groupwise(weight: Tensor, group_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """(out, in) floats -> codes uint8 (out, in) in [0, 15], scale and zero (out, in / group).

    `group_size` must divide `in` (the caller checks, with a message naming the layer).
    """
    out_features, in_features = weight.shape
    groups = weight.float().reshape(out_features, in_features // group_size, group_size)
    low = groups.amin(dim=-1).clamp(max=0)  # (out, G): 0 stays inside the range
    high = groups.amax(dim=-1).clamp(min=0)
    scale = ((high - low) / QMAX).clamp(min=1e-12)  # (out, G)
    zero = (-low / scale).round().clamp(0, QMAX)  # (out, G)
    q = (groups / scale[..., None]).round() + zero[..., None]  # (out, G, group)
    codes = q.clamp(0, QMAX).to(torch.uint8).reshape(out_features, in_features)
    return codes, scale, zero.to(torch.uint8)


def dequantize_groupwise(codes: Tensor, scale: Tensor, zero: Tensor, dtype=torch.float32):
    """codes (out, in), scale and zero (out, G) -> floats (out, in): (q - zero) · scale."""
    out_features, in_features = codes.shape
    G = scale.size(1)
    q = codes.reshape(out_features, G, in_features // G).to(dtype)  # (out, G, group)
    w = (q - zero[..., None].to(dtype)) * scale[..., None].to(dtype)
    return w.reshape(out_features, in_features)


def pack_int4(codes: Tensor) -> Tensor:
    """(out, in) codes in [0, 15] -> (out, in / 2) bytes, even features in the low nibble."""
    return codes[:, 0::2] | (codes[:, 1::2] << 4)


def unpack_int4(packed: Tensor) -> Tensor:
    """(out, in / 2) bytes -> (out, in) codes: the inverse of `pack_int4`."""
    low, high = packed & 0x0F, packed >> 4
    return torch.stack((low, high), dim=-1).reshape(packed.size(0), -1)  # (out, in)


class Int4Linear(nn.Module):
    """A Linear with a group-wise int4 weight, two codes a byte (see the module doc).

    Buffers: `weight` uint8 (out, in / 2), `scale` (out, G), `zero` uint8 (out, G), `bias`.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool, group_size: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.group_size = group_size
        G = in_features // group_size
        self.register_buffer(
            "weight", torch.zeros(out_features, in_features // 2, dtype=torch.uint8)
        )
        self.register_buffer("scale", torch.ones(out_features, G))
        self.register_buffer("zero", torch.zeros(out_features, G, dtype=torch.uint8))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int) -> Int4Linear:
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, group_size)
        codes, module.scale, module.zero = quantize_groupwise(linear.weight.detach(), group_size)
        module.weight = pack_int4(codes)
        if linear.bias is not None:
            module.bias = linear.bias.detach().clone()
        return module.to(linear.weight.device)

    def dequantized_weight(self, dtype) -> Tensor:
        """The float weight (out, in) these codes stand for."""
        return dequantize_groupwise(unpack_int4(self.weight), self.scale, self.zero, dtype)

    def forward(self, x: Tensor) -> Tensor:
        # The seam for tinygemm (see the module doc): on CUDA, torch._weight_int4pack_mm.
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantized_weight(x.dtype), bias)  # (..., out)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"group_size={self.group_size}"
        )
