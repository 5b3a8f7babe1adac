"""The GPU kernels of gptlab's quantization against the readable paths they stand in for: tinygemm
(int4), torch._scaled_mm (fp8), cuBLASLt's int8 product, and compiled decoding through each.
Skipped without CUDA (fp8 also without compute capability 8.9); run on the GPU machine with
`PYTHONPATH=src python3 -m pytest tests/test_quantization_cuda.py -q -o addopts=""`."""

from __future__ import annotations

import copy

import pytest
import torch
from test_quantization import CONFIG, text_batches, tiny_gpt
from torch import nn

from gptlab.generation import Decoder, GenerationConfig
from gptlab.generation.loop import generate
from gptlab.quantization import QuantConfig, quantize_model
from gptlab.quantization.fp8 import (
    Fp8Linear,
    dequantize_fp8,
    kernel_runs,
    quantize_fp8,
    scaled_mm,
)
from gptlab.quantization.int4 import Int4Linear, tinygemm_runs
from gptlab.quantization.int8 import Int8Linear, int8_matmul

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")


def has_fp8() -> bool:
    return torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9)


needs_fp8 = pytest.mark.skipif(not has_fp8(), reason="fp8 needs compute capability 8.9 or more")


def bf16_linear(in_features=256, out_features=192, seed=0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(in_features, out_features).to(CUDA, torch.bfloat16)


@pytest.mark.parametrize("rows", [1, 16, 33])
@pytest.mark.parametrize("group_size", [32, 64, 128])
def test_tinygemm_equals_the_dequantized_product(rows, group_size):
    linear = bf16_linear()
    layer = Int4Linear.from_linear(linear, group_size)
    x = torch.randn(rows, 256, device=CUDA, dtype=torch.bfloat16)
    with torch.no_grad():
        assert tinygemm_runs(x, layer)
        y = layer(x)
        assert layer.tinygemm_weight is not None  # it ran the kernel
        reference = x.float() @ layer.dequantized_weight(torch.float32).t() + linear.bias.float()
    assert (y.float() - reference).abs().max() <= 2**-6 * reference.abs().max()
    assert set(layer.state_dict()) == {"weight", "scale", "zero", "bias"}  # the copy is not saved


def test_tinygemm_copy_is_rebuilt_after_a_state_dict_is_loaded():
    layer = Int4Linear.from_linear(bf16_linear(), 64)
    other = Int4Linear.from_linear(bf16_linear(seed=1), 64)
    x = torch.randn(2, 256, device=CUDA, dtype=torch.bfloat16)
    with torch.no_grad():
        layer(x)
        layer.load_state_dict(other.state_dict())
        assert layer.tinygemm_weight is None
        assert torch.equal(layer(x), other(x))


@pytest.mark.parametrize("rows", [1, 5, 40])
def test_cuda_int8_product_is_exact_with_few_rows_padded(rows):
    generator = torch.Generator().manual_seed(0)
    a = torch.randint(-127, 128, (rows, 64), generator=generator, dtype=torch.int8)
    b = torch.randint(-127, 128, (48, 64), generator=generator, dtype=torch.int8)
    expected = a.long() @ b.long().t()
    assert torch.equal(int8_matmul(a.to(CUDA), b.to(CUDA)).cpu().long(), expected)


@needs_fp8
@pytest.mark.parametrize("per_row", [True, False])
@pytest.mark.parametrize("rows", [1, 16, 33])
def test_scaled_mm_equals_the_dequantized_product(per_row, rows):
    a, a_scale = quantize_fp8(torch.randn(rows, 256, device=CUDA), per_row)
    b, b_scale = quantize_fp8(torch.randn(192, 256, device=CUDA), per_row)
    assert kernel_runs(a, b)
    reference = dequantize_fp8(a, a_scale) @ dequantize_fp8(b, b_scale).t()
    product = scaled_mm(a, a_scale, b, b_scale).float()
    assert (product - reference).abs().max() <= 2**-7 * reference.abs().max()


@needs_fp8
@pytest.mark.parametrize("scaling", ["row", "tensor"])
def test_fp8_linear_on_the_gpu_is_close_to_the_float_one(scaling):
    linear = bf16_linear()
    layer = Fp8Linear.from_linear(linear, scaling)
    x = torch.randn(3, 7, 256, device=CUDA, dtype=torch.bfloat16)
    with torch.no_grad():
        y, reference = layer(x), linear(x)
    assert y.dtype == torch.bfloat16 and y.shape == reference.shape
    assert (y.float() - reference.float()).abs().max() < 0.15 * reference.abs().max()


def int8_weight_linear() -> Int8Linear:
    return Int8Linear.from_linear(bf16_linear(), "weight")


def test_compiled_int8_weight_only_equals_eager():
    layer = int8_weight_linear()
    x = torch.randn(1, 256, device=CUDA, dtype=torch.bfloat16)
    with torch.no_grad():
        eager, compiled = layer(x), torch.compile(layer, fullgraph=True)(x)
    assert torch.allclose(compiled.float(), eager.float(), atol=2e-2, rtol=2e-2)


METHODS = ["int8-weight", "int4-weight", "int8-dynamic", "int8-static"] + (
    ["fp8"] if has_fp8() else []
)


@pytest.mark.parametrize("method", METHODS)
def test_a_quantized_gpt_decodes_on_the_gpu_compiled_as_eager(method):
    torch._dynamo.reset()
    model = tiny_gpt().to(CUDA, torch.bfloat16)
    calibration = [b.to(CUDA) for b in text_batches()] if method == "int8-static" else None
    quantized = quantize_model(
        copy.deepcopy(model), QuantConfig(method, group_size=32), calibration
    )
    prompts = torch.randint(
        0, CONFIG.vocab_size, (2, 6), generator=torch.Generator().manual_seed(3)
    )
    config = GenerationConfig(strategy="greedy", max_new_tokens=8)
    with torch.no_grad():
        eager = generate(quantized, prompts.tolist(), config)
        decoder = Decoder(quantized, compile=True, cache_length=CONFIG.context_length)
        compiled = generate(quantized, prompts.tolist(), config, decoder=decoder)
        reference, _ = model(prompts.to(CUDA))
        logits, _ = quantized(prompts.to(CUDA))
    same = sum(a == b for x, y in zip(eager, compiled) for a, b in zip(x, y))
    assert same >= 0.9 * sum(map(len, eager))
    assert (logits.float() - reference.float()).abs().max() < 0.1 * reference.abs().max()
    if method == "int4-weight":
        assert quantized.h[0].mlp.c_fc.tinygemm_weight is not None  # decoding used tinygemm
