"""int8-static (calibration), fp8 and tinygemm's int4 format, on the CPU: each against the float
or dequantized reference it stands for. The same paths on a GPU: tests/test_quantization_cuda.py."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import load_file
from test_cli_finetune import language_model  # noqa: F401 (fixture)
from test_quantization import CONFIG, EPS, gptlab, linear_with_outliers, text_batches, tiny_gpt
from torch import nn

from gptlab.errors import ConfigError
from gptlab.quantization import QuantConfig, apply, quantize_model, quantized_skeleton
from gptlab.quantization import int8 as int8_module
from gptlab.quantization.calibration import observe_inputs
from gptlab.quantization.fp8 import (
    FP8,
    Fp8Linear,
    dequantize_fp8,
    fp8_matmul,
    quantize_fp8,
    scaled_mm,
)
from gptlab.quantization.int4 import (
    Int4Linear,
    dequantize_groupwise,
    even_in_high_nibble,
    inner_k_tiles,
    pack_int4,
    quantize_groupwise,
    tinygemm_fits,
    tinygemm_scales_and_zeros,
)
from gptlab.quantization.int8 import Int8Linear, Int8TiedHead, dequantize, quantize_per_channel
from gptlab.training.checkpoint import MODEL_FILE, save_weights


def float_inputs(model: nn.Module, batches) -> dict[str, torch.Tensor]:
    """Every Linear's inputs over `batches`, concatenated (rows, in): what calibration saw."""
    seen = {}
    hooks = [
        module.register_forward_pre_hook(
            lambda m, args, name=name: seen.setdefault(name, []).append(args[0].flatten(0, -2))
        )
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
    ]
    with torch.no_grad():
        for batch in batches:
            model(batch)
    for hook in hooks:
        hook.remove()
    return {name: torch.cat(rows) for name, rows in seen.items()}


@pytest.fixture(autouse=True)
def readable_int8(monkeypatch):
    monkeypatch.setattr(int8_module, "FAST_CPU", False)


# --- int8-static ----------------------------------------------------------------------------------


def test_calibration_sets_each_input_scale_to_the_largest_input_seen_over_127():
    model = tiny_gpt()
    inputs = float_inputs(model, text_batches())
    quantized = quantize_model(copy.deepcopy(model), QuantConfig("int8-static"), text_batches())
    assert set(inputs) == {name for name, m in quantized.named_modules() if hasattr(m, "mode")}
    for name, x in inputs.items():
        layer = quantized.get_submodule(name)
        assert layer.mode == "static", name
        assert torch.allclose(layer.input_scale, x.abs().max() / 127), name
    assert isinstance(quantized.lm_head, Int8TiedHead) and quantized.lm_head.input_scale != 1


def test_a_percentile_observer_clips_the_rarest_inputs():
    model = tiny_gpt()
    batches = text_batches()
    inputs = float_inputs(model, batches)
    config = QuantConfig("int8-static", observer="percentile", percentile=99.0)
    quantized = quantize_model(copy.deepcopy(model), config, batches)
    for name, x in inputs.items():
        scale = quantized.get_submodule(name).input_scale
        expected = sum(
            torch.quantile(b.abs().flatten(), 0.99) for b in x.split(x.size(0) // len(batches))
        ) / len(batches)
        assert torch.allclose(scale * 127, expected, rtol=1e-5), name
        assert scale * 127 < x.abs().max()  # the largest inputs lie past the range: clipped


def test_int8_static_linear_is_within_its_bound_inside_the_calibrated_range_and_saturates_past_it():
    """As int8-dynamic's bound, with one scale x_s for every token:
    |error_j| <= x_s/2 ||W_j||₁ + w_s_j/2 ||x_q x_s||₁ for inputs with |x| <= 127 x_s."""
    linear = linear_with_outliers()
    layer = Int8Linear.from_linear(linear, "static")
    x = torch.randn(9, 64)
    layer.input_scale.fill_(x.abs().max() / 127)
    x_deq = (x / layer.input_scale).round() * layer.input_scale
    error = (linear(x) - layer(x)).abs()  # (9, 24)
    bound = layer.input_scale / 2 * linear.weight.abs().sum(1) + layer.scale / 2 * x_deq.abs().sum(
        1, keepdim=True
    )
    assert (error <= bound * (1 + EPS) + EPS).all() and error.max() > 0
    # Twice the calibrated range: every input counts as ±127 steps, as if it were halved.
    twice = layer(2 * x.sign() * x.abs().max())
    assert torch.allclose(twice, layer(x.sign() * x.abs().max()))


def test_static_scales_are_never_finer_than_dynamic_ones_on_the_calibration_text():
    """On the text it was calibrated on, a max observer's scale is at least each token's own
    max/127, so int8-static rounds at least as coarsely as int8-dynamic, and its logits move
    further from the float model's."""
    model = tiny_gpt()
    batches = text_batches()
    inputs = float_inputs(model, batches)
    static = quantize_model(copy.deepcopy(model), QuantConfig("int8-static"), batches)
    dynamic = quantize_model(copy.deepcopy(model), QuantConfig("int8-dynamic"))
    for name, x in inputs.items():
        _, token_scales = quantize_per_channel(x)
        assert (token_scales <= static.get_submodule(name).input_scale * (1 + EPS)).all(), name
    idx = torch.cat(batches)
    with torch.no_grad():
        reference = model(idx, all_logits=True)[0]
        errors = {
            name: (m(idx, all_logits=True)[0] - reference).abs().mean()
            for name, m in [("static", static), ("dynamic", dynamic)]
        }
    assert errors["dynamic"] < errors["static"] < 0.01 * reference.abs().max()


def test_calibration_needs_a_batch():
    with pytest.raises(ConfigError, match="at least one batch"):
        quantize_model(tiny_gpt(), QuantConfig("int8-static"), [])
    with pytest.raises(ConfigError, match="at least one batch"):
        observe_inputs(tiny_gpt(), [], ["lm_head"], "max", 99.0)


def test_quantize_int8_static_calibrates_on_the_given_text_and_records_it(
    language_model,  # noqa: F811
    tmp_path,
    capsys,
):
    corpus = tmp_path / "calibration.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 200)
    out = tmp_path / "static"
    args = ["--method", "int8-static", "--calibration-data", corpus, "--calibration-batches", 2]
    assert gptlab("quantize", language_model, *args, "--out", out) == 0
    section = json.loads((out / "config.json").read_text())["quantization"]
    assert section["method"] == "int8-static" and section["observer"] == "max"
    assert section["calibration"] == {
        "data": str(corpus),
        "batches": 2,
        "tokens": 2 * 4 * 64,
    }  # context 64
    saved = load_file(str(out / MODEL_FILE))
    assert saved["h.0.mlp.c_fc.input_scale"].shape == () and "lm_head.input_scale" in saved
    assert saved["h.0.mlp.c_fc.input_scale"] != 1  # calibrated
    capsys.readouterr()
    assert gptlab("info", out) == 0
    info = capsys.readouterr().out
    assert "max observer" in info and f"calibrated on   512 tokens of {corpus}" in info
    assert gptlab("sample", out, "--prompt", "the", "--max-new-tokens", 4, "--device", "cpu") == 0


# --- fp8 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("per_row", [True, False])
def test_fp8_round_trip_error_is_at_most_a_sixteenth_or_a_subnormal_half_step(per_row):
    w = linear_with_outliers().weight.detach()
    q, scale = quantize_fp8(w, per_row)
    assert q.dtype == FP8 and scale.shape == ((24, 1) if per_row else (1, 1))
    assert q.float().abs().max() == 448  # the largest value maps to fp8's largest
    error = (w - dequantize_fp8(q, scale)).abs()
    bound = torch.maximum(w.abs() / 16, scale * 2**-10)
    assert (error <= bound * (1 + EPS)).all() and error.max() > 0


@pytest.mark.parametrize("scaling", ["row", "tensor"])
def test_fp8_linear_is_the_product_of_its_dequantized_operands(scaling):
    linear = linear_with_outliers()
    layer = Fp8Linear.from_linear(linear, scaling)
    x = torch.randn(3, 5, 64)
    x_q, x_scale = quantize_fp8(x.reshape(-1, 64), scaling == "row")
    w = dequantize_fp8(layer.weight, layer.scale)
    expected = (dequantize_fp8(x_q, x_scale) @ w.t() + linear.bias).reshape(3, 5, 24)
    assert torch.allclose(layer(x), expected, atol=1e-6)
    # ... and close to the float Linear: each operand is within 1/16 of itself.
    reference = linear(x)
    assert (layer(x) - reference).abs().max() < 0.15 * reference.abs().max()


@pytest.mark.skipif(not hasattr(torch, "_scaled_mm"), reason="this torch has no _scaled_mm")
@pytest.mark.parametrize("per_row", [True, False])
@pytest.mark.parametrize("rows", [1, 16])
def test_the_scaled_mm_call_computes_the_reference_product(per_row, rows):
    """The arguments gptlab passes to torch._scaled_mm (layouts, scale shapes), run by the CPU
    kernel where this torch has one; the CUDA kernel takes the same call (test_quantization_cuda)."""
    a, a_scale = quantize_fp8(torch.randn(rows, 64), per_row)
    b, b_scale = quantize_fp8(torch.randn(32, 64), per_row)
    try:
        product = scaled_mm(a, a_scale, b, b_scale)
    except (RuntimeError, NotImplementedError) as error:
        pytest.skip(f"no CPU kernel for _scaled_mm in this torch: {error}")
    reference = fp8_matmul(a, a_scale, b, b_scale)
    assert product.dtype == torch.bfloat16
    assert torch.allclose(product.float(), reference, atol=2**-7 * reference.abs().max())


def fp8_model_on_the_cpu(monkeypatch, scaling="row") -> nn.Module:
    """A tiny GPT quantized to fp8, its device check lifted: the CPU runs the reference path."""
    monkeypatch.setattr(apply, "check_method", lambda config, device: None)
    return quantize_model(tiny_gpt(), QuantConfig("fp8", fp8_scaling=scaling))


@pytest.mark.parametrize("scaling", ["row", "tensor"])
def test_an_fp8_model_saves_and_loads_its_fp8_weights_as_they_are(monkeypatch, tmp_path, scaling):
    model = fp8_model_on_the_cpu(monkeypatch, scaling)
    save_weights(model, tmp_path / MODEL_FILE)
    saved = load_file(str(tmp_path / MODEL_FILE))
    assert saved["h.0.attn.c_attn.weight"].dtype == FP8
    rows = 3 * CONFIG.n_embd if scaling == "row" else 1
    assert saved["h.0.attn.c_attn.scale"].shape == (rows, 1)
    assert saved["wte.weight"].dtype == torch.int8  # the tied table is int8 for every method
    loaded = quantized_skeleton(tiny_gpt(seed=1), QuantConfig("fp8", fp8_scaling=scaling))
    loaded.load_state_dict(saved)
    idx = torch.arange(12)[None]
    with torch.no_grad():
        assert torch.equal(loaded(idx)[0], model(idx)[0])
        reference = tiny_gpt()(idx)[0]
        assert (loaded(idx)[0] - reference).abs().max() < 0.1 * reference.abs().max()


def test_an_fp8_layer_stays_fp8_when_the_model_moves_to_bfloat16(monkeypatch):
    model = fp8_model_on_the_cpu(monkeypatch)
    before = model.h[0].mlp.c_fc.weight.clone()
    model.to(torch.bfloat16)
    layer = model.h[0].mlp.c_fc
    assert layer.weight.dtype == FP8 and torch.equal(layer.weight.float(), before.float())
    assert layer.scale.dtype == torch.float32


def test_fp8_on_a_gpu_without_fp8_tensor_cores_is_refused_naming_what_it_needs(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100")
    with pytest.raises(ConfigError) as error:
        apply.check_method(QuantConfig("fp8"), "cuda")
    message = str(error.value)
    assert "compute capability 8.9 or more (H100, H200, Ada)" in message
    assert "NVIDIA A100 has 8.0" in message


# --- int4: tinygemm's format ----------------------------------------------------------------------

needs_cpu_int4pack = pytest.mark.skipif(
    not hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu"),
    reason="this torch has no CPU twin of tinygemm's int4 kernel",
)


@needs_cpu_int4pack
@pytest.mark.parametrize("group_size", [32, 64])
def test_tinygemm_scales_and_zeros_give_our_dequantized_weight(group_size):
    """tinygemm reads w = (q - 8) · scale + zero'; ours is (q - z) · scale. The CPU twin of the
    kernel, fed our codes and the converted scales and zeros, gives x times our dequantized
    weight (within bfloat16's rounding of scale and zero')."""
    torch.manual_seed(0)
    weight = torch.randn(48, 128) * 0.05
    codes, scale, zero = quantize_groupwise(weight, group_size)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(
        codes.to(torch.int32), inner_k_tiles(128)
    )
    scales_and_zeros = tinygemm_scales_and_zeros(scale, zero)
    assert scales_and_zeros.shape == (128 // group_size, 48, 2)
    x = torch.randn(5, 128).to(torch.bfloat16)
    y = torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed, group_size, scales_and_zeros)
    reference = x.float() @ dequantize_groupwise(codes, scale, zero).t()
    assert (y.float() - reference).abs().max() <= 2**-6 * reference.abs().max()
    wrong = tinygemm_scales_and_zeros(scale, zero.fill_(8 - 3))  # another zero: far off
    z = torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed, group_size, wrong)
    assert (z.float() - reference).abs().max() > 0.1 * reference.abs().max()


def test_tinygemm_gets_the_even_feature_in_the_high_nibble():
    """The layout torch's own tests hand `_convert_weight_to_int4pack`:
    (codes[:, ::2] << 4) | codes[:, 1::2], from our bytes, which hold the even one low."""
    codes = torch.randint(0, 16, (8, 64), generator=torch.Generator().manual_seed(0))
    codes = codes.to(torch.uint8)
    expected = (codes[:, ::2] << 4) | codes[:, 1::2]
    assert torch.equal(even_in_high_nibble(pack_int4(codes)), expected)


def test_tinygemm_takes_gpt2_xl_shapes_with_groups_of_64_not_128():
    # gpt2-xl: width 1600 (= 25 x 64), MLP 6400; c_attn 1600 -> 4800, c_fc 1600 -> 6400.
    assert inner_k_tiles(1600) == 4 and inner_k_tiles(6400) == 8 and inner_k_tiles(768) == 8
    assert tinygemm_fits(1600, 4800, 64) and tinygemm_fits(6400, 1600, 64)
    assert not tinygemm_fits(1600, 4800, 48)  # not one of tinygemm's group sizes
    assert not tinygemm_fits(1600, 2, 64)  # a two-label classifier's head: the readable path
    assert inner_k_tiles(24) is None


def test_int4_on_the_cpu_keeps_the_readable_path_and_saves_no_tinygemm_copy():
    linear = nn.Linear(128, 64)
    layer = Int4Linear.from_linear(linear, 64)
    x = torch.randn(2, 128)
    assert torch.allclose(layer(x), x @ layer.dequantized_weight(torch.float32).t() + linear.bias)
    assert layer.tinygemm_weight is None
    assert set(layer.state_dict()) == {"weight", "scale", "zero", "bias"}


def test_int8_weight_only_is_the_dequantized_product():
    linear = linear_with_outliers()
    layer = Int8Linear.from_linear(linear, "weight")
    x = torch.randn(4, 64)
    expected = x @ dequantize(layer.weight, layer.scale).t() + linear.bias
    assert torch.allclose(layer(x), expected, atol=1e-6)
