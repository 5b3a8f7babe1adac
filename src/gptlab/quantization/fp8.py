"""fp8: weights and activations as 8-bit floats, multiplied by the tensor cores of H100/H200.

float8_e4m3fn has 1 sign bit, 4 exponent bits and 3 mantissa bits: 240 distinct magnitudes from
2^-9 to 448, spaced like a float's (dense near zero, sparse near 448), so unlike int8 a small
value keeps its relative precision. A tensor is scaled so that its largest |value| maps to 448:

    scale = max|t| / 448          q = fp8(t / scale)          t ≈ q · scale

Rounding to 3 mantissa bits moves a value by at most 1/16 of itself (half of the 2^-3 spacing
relative to its power of two), and a value in the subnormal range (below 2^-6 · scale) by at
most 2^-10 · scale: |t - q · scale| <= max(|t| / 16, 2^-10 · scale).

Scaling (`fp8_scaling`): "row", one scale per output channel of the weight and per token of the
activations (the finer, the default), or "tensor", one for each. Weights are quantized once
(stored as float8 with float32 scales); activations at run time, from each batch's max
(dynamic, as int8-dynamic). The product: on a CUDA GPU of compute capability 8.9 or more,
`torch._scaled_mm(x_q, W_qᵀ, scale_a, scale_b)`, fp8 x fp8 accumulated in float32 and
rescaled by the tensor cores (the second operand must be column-major: W_q (out, in) stored row
by row is exactly that once transposed; scales are float32, one number each for "tensor", or
(M, 1) and (1, N) for "row", which asks for a bfloat16 result; PyTorch's rowwise kernel is
built for Hopper (9.0) and later, so on Ada (8.9) use "tensor"). Elsewhere the reference: both
operands dequantized and multiplied in float32, the same numbers up to the order of the sums;
the tests hold the kernel against it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0  # torch.finfo(torch.float8_e4m3fn).max
TINY_SCALE = 1e-12  # the scale of an all-zero row
SCALINGS = ("row", "tensor")
KERNEL_MULTIPLE = 16  # _scaled_mm wants K and N multiples of 16 (meta_scaled_mm)


def quantize_fp8(t: Tensor, per_row: bool) -> tuple[Tensor, Tensor]:
    """(rows, K) floats -> fp8 (rows, K) and float32 scales: (rows, 1) per row, (1, 1) per tensor."""
    t = t.float()
    amax = t.abs().amax(dim=-1, keepdim=True) if per_row else t.abs().amax().reshape(1, 1)
    scale = amax.clamp(min=TINY_SCALE) / FP8_MAX  # (rows, 1) or (1, 1)
    q = (t / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8)  # rounds to the nearest fp8
    return q, scale


def dequantize_fp8(q: Tensor, scale: Tensor, dtype=torch.float32) -> Tensor:
    """fp8 (rows, K) and scales (rows, 1) or (1, 1) -> floats (rows, K)."""
    return q.to(dtype) * scale.to(dtype)


def scaled_mm(a: Tensor, a_scale: Tensor, b: Tensor, b_scale: Tensor) -> Tensor:
    """`torch._scaled_mm` of a (M, K) fp8 and b (N, K) fp8: (a · a_scale)(b · b_scale)ᵀ (M, N)
    in bfloat16. Scales as `quantize_fp8` returns them: (M, 1) and (N, 1), or (1, 1) each."""
    rowwise = a_scale.numel() > 1 or b_scale.numel() > 1
    if rowwise:  # the rowwise kernel wants (M, 1) and (1, N), contiguous, even for one row
        a_scale = a_scale.expand(a.size(0), 1).contiguous()
        b_scale = b_scale.reshape(1, -1).expand(1, b.size(0)).contiguous()
    return torch._scaled_mm(
        a, b.t(), scale_a=a_scale, scale_b=b_scale, out_dtype=torch.bfloat16
    )  # (M, N); b.t() is column-major, as the kernel wants its second operand


def kernel_runs(a: Tensor, b: Tensor) -> bool:
    """Whether `scaled_mm` is the product to use: on CUDA (whose capability `check_method`
    checked when the model was quantized or loaded), with K and N multiples of 16."""
    return (
        a.device.type == "cuda"
        and a.size(1) % KERNEL_MULTIPLE == 0
        and b.size(0) % KERNEL_MULTIPLE == 0
    )


def fp8_matmul(a: Tensor, a_scale: Tensor, b: Tensor, b_scale: Tensor) -> Tensor:
    """(a · a_scale)(b · b_scale)ᵀ for fp8 a (M, K), b (N, K): the kernel where it runs, else the
    float32 reference."""
    if kernel_runs(a, b):
        return scaled_mm(a, a_scale, b, b_scale)
    return dequantize_fp8(a, a_scale) @ dequantize_fp8(b, b_scale).t()  # (M, N)


class Fp8Linear(nn.Module):
    """A Linear whose weight is float8_e4m3fn, its input quantized to fp8 at run time.

    Buffers: `weight` fp8 (out, in), `scale` float32 (out, 1) for "row" scaling or (1, 1) for
    "tensor", `bias` as the Linear's.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool, scaling: str):
        super().__init__()
        if scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
        self.in_features, self.out_features, self.scaling = in_features, out_features, scaling
        rows = out_features if scaling == "row" else 1
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=FP8))
        self.register_buffer("scale", torch.ones(rows, 1))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear, scaling: str) -> Fp8Linear:
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, scaling)
        module.weight, module.scale = quantize_fp8(linear.weight.detach(), scaling == "row")
        if linear.bias is not None:
            module.bias = linear.bias.detach().clone()
        return module.to(linear.weight.device)

    def _apply(self, fn, recurse=True):
        # nn.Module.to(dtype) converts every floating-point tensor, float8 included:
        # `model.to(torch.bfloat16)` would widen the weight. bfloat16 holds every e4m3 value,
        # so narrowing it back is exact; the scales stay float32, as _scaled_mm wants them.
        super()._apply(fn, recurse)
        self.weight, self.scale = self.weight.to(FP8), self.scale.float()
        return self

    def forward(self, x: Tensor) -> Tensor:
        rows = x.reshape(-1, self.in_features)  # (N, in)
        x_q, x_scale = quantize_fp8(rows, self.scaling == "row")  # (N, in) fp8, (N, 1) or (1, 1)
        y = fp8_matmul(x_q, x_scale, self.weight, self.scale).to(x.dtype)  # (N, out)
        y = y.reshape(*x.shape[:-1], self.out_features)  # (..., out)
        return y if self.bias is None else y + self.bias.to(y.dtype)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"scaling={self.scaling}"
        )
