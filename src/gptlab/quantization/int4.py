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

`Int4Linear.forward` dequantizes the whole weight and multiplies: readable, not fast. On a CUDA
GPU in bfloat16 it runs PyTorch's tinygemm kernel instead (`torch.ops.aten._weight_int4pack_mm`,
the one gpt-fast uses), which reads the 4-bit codes from memory and dequantizes them in
registers. Its format is its own, built from the codes stored here at the first forward and
kept as buffers that are not saved (the saved format stays the plain one above):

- the codes as `_convert_weight_to_int4pack(uint8 (out, in / 2), inner_k_tiles)` wants them:
  two a byte with the *even* feature in the high nibble (ours has it in the low one), tiled
  into int32 (out / 8, in / (16 · inner_k_tiles), 32, inner_k_tiles / 2);
- scales and zeros as one bfloat16 tensor (groups, out, 2), with tinygemm's convention
  w = (q - 8) · scale + zero', a float zero' at the middle code 8. Ours, w = (q - z) · scale,
  is the same line with zero' = (8 - z) · scale.

`tests/test_quantization.py` holds this conversion against the CPU twin of the kernel
(`_weight_int4pack_mm_for_cpu`, which takes unpacked codes but the same scales and zeros), and a
CUDA-only test holds the kernel itself against the dequantized product.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

QMAX = 15  # unsigned 4 bits: codes 0..15
TINYGEMM_MID = 8  # tinygemm's codes are centred on 8: w = (q - 8) · scale + zero'
TINYGEMM_GROUP_SIZES = (32, 64, 128, 256)
TINYGEMM_K_TILE = 16  # the input width must be a multiple of 16 · inner_k_tiles


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


def even_in_high_nibble(packed: Tensor) -> Tensor:
    """Our bytes (out, in / 2), even feature low, as tinygemm's packing wants them: the even
    feature in the high nibble. A swap of the nibbles (uint8 drops the bits shifted out)."""
    return ((packed << 4) | (packed >> 4)).contiguous()


def tinygemm_scales_and_zeros(scale: Tensor, zero: Tensor) -> Tensor:
    """Our scale and zero (out, G) -> tinygemm's (G, out, 2) bfloat16: [scale, (8 - z) · scale]."""
    float_zero = (TINYGEMM_MID - zero.float()) * scale  # (out, G): w at code 8
    pairs = torch.stack((scale.float(), float_zero), dim=-1)  # (out, G, 2)
    return pairs.transpose(0, 1).contiguous().to(torch.bfloat16)  # (G, out, 2)


def inner_k_tiles(in_features: int) -> int | None:
    """The largest of tinygemm's tilings (8, 4, 2) that the input width fills; None if none."""
    return next((n for n in (8, 4, 2) if in_features % (TINYGEMM_K_TILE * n) == 0), None)


def tinygemm_fits(in_features: int, out_features: int, group_size: int) -> bool:
    """Whether a layer's shape is one tinygemm takes (`aten/src/ATen/native/cuda/int4mm.cu`):
    a group size of 32 to 256, out a multiple of 8, in a multiple of 32 at least."""
    return (
        group_size in TINYGEMM_GROUP_SIZES
        and out_features % 8 == 0
        and inner_k_tiles(in_features) is not None
    )


def tinygemm_runs(x: Tensor, layer: Int4Linear) -> bool:
    """Whether `layer`'s product runs through tinygemm: bfloat16 on a CUDA GPU, a shape it
    takes, no gradient wanted for x (the kernel has no backward: QLoRA keeps the readable path),
    and this torch has the kernel."""
    return (
        x.device.type == "cuda"
        and x.dtype == torch.bfloat16
        and not (torch.is_grad_enabled() and x.requires_grad)
        and tinygemm_fits(layer.in_features, layer.out_features, layer.group_size)
        and hasattr(torch.ops.aten, "_weight_int4pack_mm")
    )


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
        # tinygemm's copy of the weight (see the module doc): built at the first CUDA forward,
        # never saved, dropped when a state dict is loaded into the layer.
        self.register_buffer("tinygemm_weight", None, persistent=False)
        self.register_buffer("tinygemm_scales_and_zeros", None, persistent=False)

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
        bias = None if self.bias is None else self.bias.to(x.dtype)
        if tinygemm_runs(x, self) and self._tinygemm_ready(x.device):
            rows = x.reshape(-1, self.in_features)  # (N, in): the kernel takes 2-D input
            y = torch.ops.aten._weight_int4pack_mm(
                rows, self.tinygemm_weight, self.group_size, self.tinygemm_scales_and_zeros
            )  # (N, out)
            y = y.reshape(*x.shape[:-1], self.out_features)  # (..., out)
            return y if bias is None else y + bias
        return F.linear(x, self.dequantized_weight(x.dtype), bias)  # (..., out)

    def _tinygemm_ready(self, device: torch.device) -> bool:
        """Build tinygemm's copy on `device` if it is missing. Not inside torch.compile, which
        cannot record new buffers: a compiled forward before any eager one (gptlab's decoding
        prefills eagerly first) runs the readable path."""
        if self.tinygemm_weight is not None and self.tinygemm_weight.device == device:
            return True
        if torch.compiler.is_compiling():
            return False
        self.tinygemm_weight = torch.ops.aten._convert_weight_to_int4pack(
            even_in_high_nibble(self.weight), inner_k_tiles(self.in_features)
        )  # int32 (out / 8, in / (16 · tiles), 32, tiles / 2)
        self.tinygemm_scales_and_zeros = tinygemm_scales_and_zeros(self.scale, self.zero)
        return True

    def _load_from_state_dict(self, *args, **kwargs):
        self.tinygemm_weight = self.tinygemm_scales_and_zeros = None  # the codes change
        super()._load_from_state_dict(*args, **kwargs)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"group_size={self.group_size}"
        )
