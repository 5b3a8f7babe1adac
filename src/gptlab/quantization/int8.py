"""int8 quantization, per channel and symmetric: the simplest scheme that keeps a GPT's quality.

A float row w (in,) becomes 127 int8 steps either side of zero and one float scale:

    scale = max|w| / 127          q = round(w / scale)  in [-127, 127]          w ≈ q · scale

Rounding moves each value by at most half a step, so |w - q · scale| <= scale / 2. One scale
per output channel (row of the weight) rather than per tensor keeps a row of small weights from
being rounded to zero by another row's outlier. Symmetric (no zero point), because weights and
a transformer's activations are centred on zero, and then an integer product needs no
correction terms: (x_q · x_s) · (w_q · w_s) = (x_q · w_q) · x_s · w_s.

Two ways to run a quantized Linear (`Int8Linear`):

- "weight" (weight-only): y = (x @ W_qᵀ) · w_s + b, the int8 weight widened to x's dtype.
  Decoding one token reads every weight once, so a quarter of the bytes is the speed-up where a
  fused kernel reads int8 directly. Eager, this widens the whole weight first; under
  torch.compile on a GPU the widening is fused into the matrix-vector product, which then
  reads int8 from memory (gpt-fast's int8 path is the same line).
- "dynamic": each token's activations are quantized as they arrive (the same per-row rule,
  a row being a token), and the product is int8 x int8 -> int32, rescaled by x_s · w_s
  (Jacob et al. 2018, section 2.2, without zero points). `torch._int_mm` does it on the CPU
  and on CUDA (a few rows padded to the 17 cuBLASLt wants); elsewhere an exact integer
  product stands in.
- "static": the same product, but x_s is one number per layer fixed beforehand by calibration
  (`gptlab.quantization.calibration`) and stored as the buffer `input_scale`: no max over
  each token at run time, and the scale is known before the data, which is what integer-only
  hardware needs. The cost: a token larger than anything calibration saw saturates at
  ±127 · x_s, and one scale for every token is coarse for the small ones.

On the CPU, "dynamic" has a second, fast path (`FbgemmWeight`): the same int8 values and scales
handed to fbgemm, PyTorch's x86 int8 kernels (the ones `torch.ao.quantization.quantize_dynamic`
runs), which `torch._int_mm` is 2-3x slower than at decoding's one row (issue 13). fbgemm wants
the weight in its own packed layout, so that is built on the first CPU forward from the stored
int8 weight and kept beside it, never saved. It quantizes activations its own way (per tensor,
asymmetric, 7 bits), so its outputs differ from the readable path's within a bound of the same
form (tests/test_quantization.py). `FAST_CPU = False` runs everything through the readable path.

`Int8Embedding` is the token table in the same format, so a tied GPT keeps one int8 table for
`wte` and `lm_head` (`Int8TiedHead` reads the embedding's): at GPT-2's size that table is 30%
of the weights.
"""

from __future__ import annotations

import functools
import warnings
import weakref

import torch
import torch.nn.functional as F
from torch import Tensor, nn

QMAX = 127  # symmetric: -128 is left out, so q and -q are both representable
MODES = ("weight", "dynamic", "static")
TINY_SCALE = 1e-12  # the scale of an all-zero row: anything positive maps it to zeros
FAST_CPU = True  # int8-dynamic through fbgemm on an x86 CPU; False: the readable path everywhere


def quantize_per_channel(weight: Tensor) -> tuple[Tensor, Tensor]:
    """(out, in) floats -> int8 (out, in) and a float32 scale per row (out,)."""
    w = weight.float()
    scale = w.abs().amax(dim=-1).clamp(min=TINY_SCALE) / QMAX  # (out,)
    q = (w / scale[:, None]).round().clamp(-QMAX, QMAX).to(torch.int8)  # (out, in)
    return q, scale


def dequantize(q: Tensor, scale: Tensor, dtype=torch.float32) -> Tensor:
    """int8 (out, in) and scale (out,) -> floats (out, in): q · scale, row by row."""
    return q.to(dtype) * scale.to(dtype)[:, None]


CUDA_INT_MM_MIN_ROWS = 17  # cuBLASLt's int8 product wants M > 16 (meta__int_mm)


def int_mm_runs(a: Tensor, b: Tensor) -> bool:
    """Whether `torch._int_mm(a, b.t())` runs for int8 a (M, K) and b (N, K) on their device.

    The CPU kernel takes any shape. The CUDA one (cuBLASLt) wants M > 16, K at least 16 and K
    and N multiples of 8 (aten/src/ATen/native/cuda/Blas.cpp, _int_mm_out_cuda); `int8_matmul`
    pads fewer rows with zeros.
    """
    if not hasattr(torch, "_int_mm"):
        return False
    if a.device.type == "cpu":
        return True
    if a.device.type == "cuda":
        K = a.size(1)
        return K >= 16 and K % 8 == 0 and b.size(0) % 8 == 0
    return False


def int8_matmul(a: Tensor, b: Tensor) -> Tensor:
    """a (M, K) int8 times b (N, K) int8 transposed: the exact int32 product (M, N)."""
    if int_mm_runs(a, b):
        M = a.size(0)
        if a.device.type == "cuda" and M < CUDA_INT_MM_MIN_ROWS:
            a = torch.nn.functional.pad(a, (0, 0, 0, CUDA_INT_MM_MIN_ROWS - M))  # zero rows
        return torch._int_mm(a, b.t())[:M]
    # float64 holds every partial sum exactly (each term is at most 127², so up to 2^53 / 127²
    # terms), and unlike int32 matmul it runs on CUDA.
    return (a.double() @ b.double().t()).to(torch.int32)


def quantize_with_scale(x: Tensor, scale: Tensor) -> Tensor:
    """Floats -> int8 with a scale fixed beforehand: round(x / scale), saturating at ±127."""
    return (x.float() / scale).round().clamp(-QMAX, QMAX).to(torch.int8)


def int8_linear(
    x: Tensor,
    weight: Tensor,
    scale: Tensor,
    bias: Tensor | None,
    mode: str,
    input_scale: Tensor | None = None,
) -> Tensor:
    """y = x Wᵀ + b for an int8 weight (out, in) with per-row `scale` (out,); x (..., in).

    `input_scale` (a 0-d tensor) is the calibrated activation scale of mode "static"."""
    if mode == "weight":
        # Widen, multiply, rescale (gpt-fast's line): compiled, the widening fuses into the
        # product. The scale is in the float model's dtype (`from_linear`); Inductor then
        # rewrites this line into its int8 weight-only kernel (aten._weight_int8pack_mm), or,
        # for one row, into a fused reduction. A scale of another dtype is multiplied as it is
        # (a cast here would be a pattern Inductor's rewrite fails on, torch 2.15).
        y = (F.linear(x, weight.to(x.dtype)) * scale).to(x.dtype)  # (..., out)
    else:
        rows = x.reshape(-1, x.size(-1))  # (N, in): one row per token
        if mode == "dynamic":
            x_q, x_scale = quantize_per_channel(rows)  # (N, in) int8, (N,)
            x_scale = x_scale[:, None]  # (N, 1): one scale a token
        else:
            x_q, x_scale = quantize_with_scale(rows, input_scale), input_scale  # one for all
        accumulated = int8_matmul(x_q, weight)  # (N, out) int32
        y = accumulated.float() * x_scale * scale.float()  # (N, out)
        y = y.to(x.dtype).reshape(*x.shape[:-1], -1)  # (..., out)
    return y if bias is None else y + bias.to(y.dtype)


def fbgemm_available() -> bool:
    """Whether this torch runs fbgemm's dynamic int8 Linear: an x86 build (on ARM the engine is
    qnnpack) that still has `torch.ops.quantized`."""
    return torch.backends.quantized.engine in ("x86", "fbgemm") and _has_quantized_linear_ops()


@functools.cache
def _has_quantized_linear_ops() -> bool:
    try:
        return bool(torch.ops.quantized.linear_prepack and torch.ops.quantized.linear_dynamic)
    except (AttributeError, RuntimeError):
        return False


def fast_path_runs(x: Tensor, weight: Tensor) -> bool:
    """Whether `FbgemmWeight` can compute this product: float32 on the CPU, no gradient wanted
    (fbgemm's op has no backward; a LoRA input keeps the readable path), and not inside
    torch.compile, which cannot trace the cache's checks and compiles the readable path."""
    return (
        FAST_CPU
        and not torch.compiler.is_compiling()
        and x.device.type == "cpu"
        and weight.device.type == "cpu"
        and x.dtype == torch.float32
        and not (torch.is_grad_enabled() and x.requires_grad)
        and fbgemm_available()
    )


class FbgemmWeight:
    """fbgemm's packed copy of an int8 weight, built from it on first use and rebuilt when it
    changes.

    The int8 values and scales are handed over as they are (a per-channel qint8 tensor with
    zero points 0 is exactly our q · scale), so nothing is quantized again. A plain object, not
    a buffer: it is not in the state dict, and a copy or a pickle of the module starts without
    it. It remembers which tensors it was packed from (weak references, so a replaced weight is
    freed) and their version counters, which in-place writes such as `load_state_dict` bump.
    The cost: at run time the weights are held twice, as saved and as packed (~125 MB for GPT-2).
    """

    def __init__(self):
        self.packed = None
        self.source: tuple = ()

    def __getstate__(self) -> dict:
        return {}  # deepcopy and pickle: the copy packs its own weight on its first forward

    def __setstate__(self, state: dict) -> None:
        self.__init__()

    def linear(self, x: Tensor, weight: Tensor, scale: Tensor, bias: Tensor | None) -> Tensor:
        """y = x Wᵀ + b through fbgemm, activations quantized per tensor; x (..., in) float32."""
        # reduce_range: activations get 7 bits (0..127), so an AVX2 pair sum, at most
        # 2 · 127 · 127 = 32258 with our weights in [-127, 127], cannot saturate int16.
        # quantize_dynamic does the same on x86.
        return torch.ops.quantized.linear_dynamic(x, self.packed_for(weight, scale, bias), True)

    def packed_for(self, weight: Tensor, scale: Tensor, bias: Tensor | None):
        tensors = (weight, scale) if bias is None else (weight, scale, bias)
        if not self._packed_from(tensors):
            self.packed = pack_for_fbgemm(weight, scale, bias)
            self.source = tuple((weakref.ref(t), t._version) for t in tensors)
        return self.packed

    def _packed_from(self, tensors: tuple[Tensor, ...]) -> bool:
        return len(tensors) == len(self.source) and all(
            ref() is t and version == t._version for (ref, version), t in zip(self.source, tensors)
        )


def pack_for_fbgemm(weight: Tensor, scale: Tensor, bias: Tensor | None):
    """Our int8 weight (out, in) and scales (out,) as fbgemm's packed weight, values unchanged."""
    zero_points = torch.zeros(weight.size(0), dtype=torch.int64)
    with warnings.catch_warnings():  # torch deprecates quantized tensors (for torchao's) but
        # still runs them; once it drops them, fbgemm_available() says so and the readable path runs
        warnings.simplefilter("ignore")
        qweight = torch._make_per_channel_quantized_tensor(weight, scale.double(), zero_points, 0)
        return torch.ops.quantized.linear_prepack(qweight, None if bias is None else bias.float())


class Int8Linear(nn.Module):
    """A Linear whose weight is int8 with one scale per output channel (see the module doc).

    Buffers, not parameters: a quantized weight does not train. `weight`, `scale` and `bias`
    keep the Linear's names, so a state dict reads `c_attn.weight` (int8), `c_attn.scale`;
    mode "static" adds `c_attn.input_scale`, set by calibration (1 until then).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool, mode: str):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.in_features, self.out_features, self.mode = in_features, out_features, mode
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scale", torch.ones(out_features))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self.register_buffer("input_scale", torch.ones(()) if mode == "static" else None)
        self.fbgemm = FbgemmWeight()

    @classmethod
    def from_linear(cls, linear: nn.Linear, mode: str) -> Int8Linear:
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, mode)
        module.weight, scale = quantize_per_channel(linear.weight.detach())
        module.scale = scale.to(linear.weight.dtype)  # the float model's dtype, as its outputs
        if linear.bias is not None:
            module.bias = linear.bias.detach().clone()
        return module.to(linear.weight.device)

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "dynamic" and fast_path_runs(x, self.weight):
            return self.fbgemm.linear(x, self.weight, self.scale, self.bias)
        return int8_linear(x, self.weight, self.scale, self.bias, self.mode, self.input_scale)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, mode={self.mode}"


class Int8Embedding(nn.Module):
    """A token table (V, C) stored as int8 rows with one scale per token."""

    def __init__(self, num_embeddings: int, embedding_dim: int, multiplier: float = 1.0):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.multiplier = multiplier  # TokenEmbedding's sqrt(C) when it scales; 1 for GPT-2
        self.register_buffer("weight", torch.zeros(num_embeddings, embedding_dim, dtype=torch.int8))
        self.register_buffer("scale", torch.ones(num_embeddings))

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding) -> Int8Embedding:
        multiplier = getattr(embedding, "scale", 1.0)  # TokenEmbedding's optional sqrt(C)
        module = cls(embedding.num_embeddings, embedding.embedding_dim, multiplier)
        module.weight, scale = quantize_per_channel(embedding.weight.detach())
        # The scale's dtype is the rows' dtype (see forward): the float model's, so that a
        # bfloat16 model's embeddings stay bfloat16 for the LayerNorm that reads them.
        module.scale = scale.to(embedding.weight.dtype)
        return module.to(embedding.weight.device)

    def forward(self, idx: Tensor) -> Tensor:
        rows = self.weight[idx].to(self.scale.dtype)  # (B, T) -> (B, T, C)
        x = rows * self.scale[idx].unsqueeze(-1)  # (B, T, C)
        return x * self.multiplier if self.multiplier != 1.0 else x


class Int8TiedHead(nn.Module):
    """The output layer of a tied GPT, reading logits off the int8 embedding table.

    The embedding is held by reference, not registered as a child: the table is saved once
    (as `wte.weight`, `wte.scale`) and, moved to another device, both layers see the move.
    `weight` is the table, so `lm_head.weight is wte.weight` as in the float model. In mode
    "static" the head has its own calibrated `input_scale` (saved as `lm_head.input_scale`).
    """

    def __init__(self, embedding: Int8Embedding, mode: str):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.tied = (embedding,)  # a tuple: nn.Module does not register what is inside one
        self.mode = mode
        self.register_buffer("input_scale", torch.ones(()) if mode == "static" else None)
        self.fbgemm = FbgemmWeight()

    @property
    def weight(self) -> Tensor:
        return self.tied[0].weight

    def forward(self, x: Tensor) -> Tensor:
        embedding = self.tied[0]
        if self.mode == "dynamic" and fast_path_runs(x, embedding.weight):
            return self.fbgemm.linear(x, embedding.weight, embedding.scale, None)  # (..., V)
        weight, scale = embedding.weight, embedding.scale
        return int8_linear(x, weight, scale, None, self.mode, self.input_scale)  # (..., V)

    def extra_repr(self) -> str:
        return f"tied to the int8 embedding, mode={self.mode}"
