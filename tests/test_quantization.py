"""Quantization: gptlab's int8 and int4 formats against their error bounds, quantized models
against the float ones, quantized runs saved and loaded without quantizing again, and
`gptlab quantize` with the commands that read its runs."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_cli_finetune import LABELS, language_model  # noqa: F401 (fixture)
from torch import nn

from gptlab import cli
from gptlab.config import ClassifierConfig, GPTConfig
from gptlab.errors import ConfigError
from gptlab.generation import GenerationConfig
from gptlab.generation.loop import generate
from gptlab.models.classifier import GPTClassifier
from gptlab.models.gpt import GPT
from gptlab.quantization import QuantConfig, quantize_model
from gptlab.quantization import calibration as calibration_module
from gptlab.quantization import int4 as int4_module
from gptlab.quantization import int8 as int8_module
from gptlab.quantization.int4 import (
    Int4Linear,
    dequantize_groupwise,
    pack_int4,
    quantize_groupwise,
    unpack_int4,
)
from gptlab.quantization.int8 import (
    Int8Embedding,
    Int8Linear,
    Int8TiedHead,
    dequantize,
    int8_matmul,
    int_mm_runs,
    quantize_per_channel,
)
from gptlab.runs import load_run, task_sections, write_run_config
from gptlab.training.checkpoint import MODEL_FILE, save_weights

CONFIG = GPTConfig(vocab_size=256, context_length=32, n_layer=2, n_head=2, n_embd=64, dropout=0.0)
BUILT = ("int8-dynamic", "int8-static", "int8-weight", "int4-weight")
EPS = 1e-5  # float32 rounding in the reference computations of the bounds


def gptlab(*args) -> int:
    return cli.main([str(arg) for arg in args])


def weights_with_outliers(out_features=24, in_features=64, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    w = torch.randn(out_features, in_features, generator=generator) * 0.02
    w[3, 5] = 0.5  # one outlier: only its own row's scale may grow
    return w


def tiny_gpt(seed=0) -> GPT:
    torch.manual_seed(seed)
    return GPT(CONFIG).eval()


def text_batches(count=3, seed=5) -> list[torch.Tensor]:
    """Batches of token ids (B, T) for int8-static to calibrate on."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, CONFIG.vocab_size, (4, 24), generator=generator) for _ in range(count)]


def quantize(model: nn.Module, config: QuantConfig) -> nn.Module:
    """`quantize_model`, with calibration batches for int8-static."""
    return quantize_model(model, config, text_batches() if config.method == "int8-static" else None)


def linear_with_outliers() -> nn.Linear:
    torch.manual_seed(0)
    linear = nn.Linear(64, 24)
    with torch.no_grad():
        linear.weight.copy_(weights_with_outliers())
    return linear


needs_fbgemm = pytest.mark.skipif(
    not int8_module.fbgemm_available(), reason="int8-dynamic's fast path is fbgemm's (x86)"
)


@pytest.fixture
def readable_int8(monkeypatch):
    """int8-dynamic through gptlab's readable path, fbgemm's fast one switched off."""
    monkeypatch.setattr(int8_module, "FAST_CPU", False)


# --- int8 ---------------------------------------------------------------------------------------


def test_int8_round_trip_error_is_at_most_half_a_step_per_row():
    w = weights_with_outliers()
    q, scale = quantize_per_channel(w)
    assert q.dtype == torch.int8 and q.shape == w.shape and scale.shape == (w.size(0),)
    assert q.abs().max() <= 127
    assert torch.allclose(scale, w.abs().amax(dim=1) / 127)
    error = (w - dequantize(q, scale)).abs()
    assert (error <= scale[:, None] / 2 + EPS * scale[:, None]).all()
    # Per channel: the outlier's row has a coarse step, the others keep theirs.
    assert scale[3] > 5 * scale[torch.arange(24) != 3].max()


def test_an_all_zero_row_quantizes_to_zeros():
    w = weights_with_outliers()
    w[0] = 0
    q, scale = quantize_per_channel(w)
    assert (q[0] == 0).all() and (dequantize(q, scale)[0] == 0).all()


def test_int8_weight_only_linear_is_within_its_bound_of_the_float_linear():
    """y - y_q = x (W - W_q s)ᵀ, and each |W - W_q s| <= s/2, so |error_j| <= ||x||₁ s_j / 2."""
    torch.manual_seed(0)
    linear = nn.Linear(64, 24)
    with torch.no_grad():
        linear.weight.copy_(weights_with_outliers())
    quantized = Int8Linear.from_linear(linear, "weight")
    x = torch.randn(5, 7, 64)
    error = (linear(x) - quantized(x)).abs()  # (5, 7, 24)
    bound = x.abs().sum(-1, keepdim=True) * quantized.scale / 2  # (5, 7, 24)
    assert (error <= bound * (1 + EPS) + EPS).all()
    assert error.max() > 0  # it did quantize


def test_int8_dynamic_linear_is_within_its_bound_of_the_float_linear(readable_int8):
    """With x = x_q x_s + e_x (|e_x| <= x_s/2) and W = W_q w_s + e_w (|e_w| <= w_s/2):
    x Wᵀ - (x_q x_s)(W_q w_s)ᵀ = e_x Wᵀ + (x_q x_s) e_wᵀ, so
    |error_j| <= x_s/2 ||W_j||₁ + w_s_j/2 ||x_q x_s||₁."""
    linear = linear_with_outliers()
    quantized = Int8Linear.from_linear(linear, "dynamic")
    x = torch.randn(9, 64)
    x_q, x_scale = quantize_per_channel(x)
    x_deq = dequantize(x_q, x_scale)
    error = (linear(x) - quantized(x)).abs()  # (9, 24)
    bound = x_scale[:, None] / 2 * linear.weight.abs().sum(
        1
    ) + quantized.scale / 2 * x_deq.abs().sum(1, keepdim=True)
    assert (error <= bound * (1 + EPS) + EPS).all()
    assert error.max() > 0
    assert quantized.fbgemm.packed is None  # the readable path it claims to test


@needs_fbgemm
def test_int8_dynamic_fast_path_is_within_its_bound_of_the_float_linear():
    """fbgemm quantizes x per tensor, asymmetric, in 7 bits (reduce_range): one step
    x_s = (max(x, 0) - min(x, 0)) / 127 for every token, the grid shifted by a rounded zero
    point, so still |e_x| <= x_s/2, and the readable path's bound holds with that x_s (a coarser
    step than a token's own max|x| / 127 when x has both signs). x dequantized is within x_s/2 of
    x, so ||x_q x_s||₁ <= ||x||₁ + in · x_s/2:
    |error_j| <= x_s/2 ||W_j||₁ + w_s_j/2 (||x||₁ + in · x_s/2)."""
    linear = linear_with_outliers()
    quantized = Int8Linear.from_linear(linear, "dynamic")
    x = torch.randn(9, 64)
    with torch.no_grad():
        error = (linear(x) - quantized(x)).abs()  # (9, 24)
    assert quantized.fbgemm.packed is not None  # it ran fbgemm
    x_scale = (x.max().clamp(min=0) - x.min().clamp(max=0)) / 127
    x_l1 = x.abs().sum(1, keepdim=True) + 64 * x_scale / 2  # (9, 1)
    bound = x_scale / 2 * linear.weight.abs().sum(1) + quantized.scale / 2 * x_l1  # (9, 24)
    assert (error <= bound * (1 + EPS) + EPS).all()
    assert error.max() > 0


@needs_fbgemm
def test_the_fbgemm_weight_is_not_saved_and_follows_the_weight_it_was_packed_from():
    """A state dict holds the int8 weight only; loading another one repacks, a copy packs anew."""
    first = Int8Linear.from_linear(linear_with_outliers(), "dynamic")
    second = Int8Linear.from_linear(nn.Linear(64, 24), "dynamic")
    x = torch.randn(3, 64)
    with torch.no_grad():
        before = first(x)
        assert set(first.state_dict()) == {"weight", "scale", "bias"}
        assert copy.deepcopy(first).fbgemm.packed is None
        first.load_state_dict(second.state_dict())  # in place: the weight's version moves on
        assert torch.equal(first(x), second(x)) and not torch.equal(first(x), before)
        first.weight = second.weight.clone()  # a new tensor
        first.scale = second.scale * 2
        assert torch.allclose(first(x) - first.bias, 2 * (second(x) - second.bias))


def fallback_case(case: str, monkeypatch) -> torch.Tensor:
    x = torch.randn(3, 64)
    if case == "switched off":
        monkeypatch.setattr(int8_module, "FAST_CPU", False)
    elif case == "no fbgemm":
        monkeypatch.setattr(int8_module, "fbgemm_available", lambda: False)
    elif case == "float64":
        x = x.double()
    elif case == "a gradient to pass":
        x.requires_grad_()
    return x


@pytest.mark.parametrize("case", ["switched off", "no fbgemm", "float64", "a gradient to pass"])
def test_int8_dynamic_runs_the_readable_path_where_fbgemm_cannot(case, monkeypatch):
    quantized = Int8Linear.from_linear(linear_with_outliers(), "dynamic")
    x = fallback_case(case, monkeypatch)
    y = quantized(x)
    assert quantized.fbgemm.packed is None
    buffers = (quantized.weight, quantized.scale, quantized.bias)
    assert torch.equal(y, int8_module.int8_linear(x, *buffers, "dynamic"))
    assert y.requires_grad == x.requires_grad


def test_a_compiled_int8_dynamic_linear_compiles_the_readable_path():
    """torch.compile cannot trace the fbgemm cache's checks; it gets the readable path."""
    quantized = Int8Linear.from_linear(linear_with_outliers(), "dynamic")
    x = torch.randn(3, 64)
    with torch.no_grad():
        compiled = torch.compile(quantized)(x)
        reference = int8_module.int8_linear(
            x, *(quantized.weight, quantized.scale), None, "dynamic"
        )
    assert quantized.fbgemm.packed is None
    assert torch.allclose(compiled, reference + quantized.bias, atol=1e-5)


@pytest.mark.parametrize("rows", [1, 32])
def test_the_int8_matmul_is_the_exact_integer_product(rows):
    generator = torch.Generator().manual_seed(rows)
    a = torch.randint(-127, 128, (rows, 72), generator=generator, dtype=torch.int8)
    b = torch.randint(-127, 128, (40, 72), generator=generator, dtype=torch.int8)
    exact = a.long() @ b.long().t()
    assert int_mm_runs(a, b) == hasattr(torch, "_int_mm")  # the CPU kernel takes any shape
    product = int8_matmul(a, b)
    assert product.dtype == torch.int32 and torch.equal(product.long(), exact)
    if hasattr(torch, "_int_mm"):
        assert torch.equal(torch._int_mm(a, b.t()).long(), exact)


def test_the_int8_matmul_fallback_is_exact_too(monkeypatch):
    monkeypatch.setattr(int8_module, "int_mm_runs", lambda a, b: False)
    a = torch.full((3, 3072), -127, dtype=torch.int8)  # the largest sum GPT-2's MLP makes
    b = torch.full((5, 3072), -127, dtype=torch.int8)
    assert torch.equal(int8_matmul(a, b), torch.full((3, 5), 127 * 127 * 3072, dtype=torch.int32))


# --- int4 ---------------------------------------------------------------------------------------


def test_int4_round_trip_error_is_at_most_half_a_step_per_group():
    w = weights_with_outliers()
    codes, scale, zero = quantize_groupwise(w, group_size=16)
    assert codes.dtype == torch.uint8 and codes.max() <= 15 and scale.shape == (24, 4)
    error = (w - dequantize_groupwise(codes, scale, zero)).abs().reshape(24, 4, 16)
    assert (error <= scale[..., None] / 2 * (1 + EPS)).all()


def test_int4_keeps_zero_exact():
    w = weights_with_outliers()
    w[:, :8] = 0
    codes, scale, zero = quantize_groupwise(w, group_size=16)
    assert (dequantize_groupwise(codes, scale, zero)[:, :8] == 0).all()


def test_int4_packing_is_two_codes_a_byte_and_round_trips():
    codes = torch.randint(0, 16, (6, 10), generator=torch.Generator().manual_seed(0)).to(
        torch.uint8
    )
    packed = pack_int4(codes)
    assert packed.shape == (6, 5) and packed.dtype == torch.uint8
    assert packed[0, 0] == codes[0, 0] + 16 * codes[0, 1]  # even feature in the low nibble
    assert torch.equal(unpack_int4(packed), codes)


def test_int4_linear_matches_the_linear_of_its_dequantized_weight():
    torch.manual_seed(0)
    linear = nn.Linear(64, 24)
    quantized = Int4Linear.from_linear(linear, group_size=32)
    assert quantized.weight.shape == (24, 32) and quantized.weight.dtype == torch.uint8
    x = torch.randn(3, 64)
    reference = x @ quantized.dequantized_weight(torch.float32).t() + linear.bias
    assert torch.allclose(quantized(x), reference, atol=1e-6)


# --- models ---------------------------------------------------------------------------------------


def test_a_tied_gpt_keeps_one_int8_table_for_wte_and_lm_head():
    model = quantize_model(tiny_gpt(), QuantConfig("int8-dynamic"))
    assert isinstance(model.wte, Int8Embedding) and isinstance(model.lm_head, Int8TiedHead)
    assert model.lm_head.weight is model.wte.weight
    assert isinstance(model.h[0].attn.c_attn, Int8Linear)
    state = model.state_dict()
    assert state["h.0.attn.c_attn.weight"].dtype == torch.int8
    assert state["h.0.attn.c_attn.scale"].shape == (3 * CONFIG.n_embd,)
    assert not any(name.startswith("lm_head") for name in state)
    assert not any(isinstance(m, nn.Linear) for m in model.modules())


# Largest logit change over the largest logit, and share of greedy tokens kept. Measured on this
# random tiny GPT: 0.8% (int8-dynamic, readable), 1.6% (int8-dynamic through fbgemm, whose
# per-tensor activation step is coarser), 0.6% and 4.7%, every token kept; int8-static 1.6%
# (one calibrated scale a layer: coarser than each token's own). The limits leave room for
# another platform's rounding, not for a broken method (a wrong scale moves logits by 100%).
CLOSENESS = {
    "int8-dynamic": (0.02, 0.9),
    "int8-static": (0.03, 0.9),
    "int8-dynamic fbgemm": (0.03, 0.9),
    "int8-weight": (0.02, 0.9),
    "int4-weight": (0.1, 0.75),
}


@pytest.mark.parametrize("method", [*BUILT, "int8-dynamic fbgemm"])
def test_a_quantized_gpt_stays_close_to_the_float_one(method, monkeypatch):
    monkeypatch.setattr(int8_module, "FAST_CPU", method.endswith("fbgemm"))
    model = tiny_gpt()
    config = QuantConfig(method.removesuffix(" fbgemm"), group_size=32)
    quantized = quantize(copy.deepcopy(model), config)
    idx = torch.randint(0, CONFIG.vocab_size, (4, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference, _ = model(idx, all_logits=True)
        logits, _ = quantized(idx, all_logits=True)
    max_change, kept = CLOSENESS[method]
    assert (logits - reference).abs().max() <= max_change * reference.abs().max()
    prompts = idx[:, :8].tolist()
    config = GenerationConfig(strategy="greedy", max_new_tokens=12)
    ours, theirs = generate(quantized, prompts, config), generate(model, prompts, config)
    same = sum(a == b for x, y in zip(ours, theirs) for a, b in zip(x, y))
    assert same >= kept * sum(map(len, theirs))


def test_a_quantized_classifier_quantizes_its_body_and_its_head():
    torch.manual_seed(0)
    model = GPTClassifier(GPT(CONFIG), ClassifierConfig(labels=LABELS)).eval()
    quantized = quantize_model(copy.deepcopy(model), QuantConfig("int8-weight"))
    assert isinstance(quantized.score, Int8Linear)
    assert isinstance(quantized.transformer.wte, Int8Embedding)
    idx = torch.randint(0, CONFIG.vocab_size, (3, 10), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.allclose(quantized(idx)[0], model(idx)[0], atol=0.02)


def test_a_group_size_that_does_not_divide_a_layer_is_refused_and_changes_nothing():
    model = tiny_gpt()
    with pytest.raises(ConfigError, match="does not divide the 64 input features"):
        quantize_model(model, QuantConfig("int4-weight", group_size=48))
    assert isinstance(model.h[0].attn.c_attn, nn.Linear) and isinstance(model.lm_head, nn.Linear)


@pytest.mark.parametrize(
    "method, message",
    [("int8-static", "needs text to calibrate"), ("fp8", "cannot run on cpu")],
)
def test_int8_static_without_text_and_fp8_on_a_cpu_are_refused(method, message):
    with pytest.raises(ConfigError, match=message):
        quantize_model(tiny_gpt(), QuantConfig(method))


# --- quantized runs -------------------------------------------------------------------------------


def write_quantized_run(path: Path, method: str) -> nn.Module:
    from gptlab.tokenizers import get_tokenizer

    config = QuantConfig(method, group_size=32)
    model = quantize(tiny_gpt(), config)
    path.mkdir()
    save_weights(model, path / MODEL_FILE)
    get_tokenizer("char", "abcdefgh").save(path / "tokenizer")
    write_run_config(
        path, CONFIG, {}, {}, **task_sections(model), quantization={**config.to_dict()}
    )
    return model


@pytest.mark.parametrize("method", BUILT)
def test_a_quantized_run_loads_its_int_weights_as_saved_without_quantizing(
    method, tmp_path, monkeypatch
):
    saved_model = write_quantized_run(tmp_path / "run", method)
    saved = load_file(str(tmp_path / "run" / MODEL_FILE))

    def refuse(*args, **kwargs):
        raise AssertionError("loading a quantized run must not quantize")

    with monkeypatch.context() as patch:
        for module, name in [
            (int8_module, "quantize_per_channel"),
            (int4_module, "quantize_groupwise"),
            (calibration_module, "observe_inputs"),
        ]:
            patch.setattr(module, name, refuse)
        model, _, _ = load_run(tmp_path / "run")
    state = model.state_dict()
    assert set(state) == set(saved)
    for name, tensor in saved.items():
        assert state[name].dtype == tensor.dtype and torch.equal(state[name], tensor), name
    assert saved["wte.weight"].dtype == torch.int8
    idx = torch.arange(10)[None]
    with torch.no_grad():
        assert torch.equal(model(idx)[0], saved_model(idx)[0])


@needs_fbgemm
def test_a_loaded_int8_dynamic_run_packs_its_saved_int8_weights_for_fbgemm(tmp_path, monkeypatch):
    write_quantized_run(tmp_path / "run", "int8-dynamic")
    saved = load_file(str(tmp_path / "run" / MODEL_FILE))
    model, _, _ = load_run(tmp_path / "run")

    def refuse(*args, **kwargs):
        raise AssertionError("the fast path quantizes no weight (nor activation) itself")

    monkeypatch.setattr(int8_module, "quantize_per_channel", refuse)
    with torch.no_grad():
        model(torch.arange(10)[None])
    for layer, name in [(model.h[1].mlp.c_proj, "h.1.mlp.c_proj"), (model.lm_head, "wte")]:
        qweight, _ = torch.ops.quantized.linear_unpack(layer.fbgemm.packed)
        assert torch.equal(qweight.int_repr(), saved[f"{name}.weight"]), name
        assert torch.equal(qweight.q_per_channel_scales().float(), saved[f"{name}.scale"]), name
    state = model.state_dict()
    assert set(state) == set(saved)
    assert all(torch.equal(state[name], tensor) for name, tensor in saved.items())


# --- the command line -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quantized_run(tmp_path_factory, language_model) -> Path:  # noqa: F811
    out = tmp_path_factory.mktemp("runs") / "lm-int8"
    assert gptlab("quantize", language_model, "--method", "int8-dynamic", "--out", out) == 0
    return out


def test_quantize_writes_a_run_with_int8_weights_and_its_method(quantized_run, language_model):  # noqa: F811
    config = json.loads((quantized_run / "config.json").read_text())
    assert config["quantization"]["method"] == "int8-dynamic"
    assert config["quantization"]["source"] == str(language_model)
    assert config["task"] == "lm" and "gptlab_version" in config["quantization"]
    saved = load_file(str(quantized_run / MODEL_FILE))
    assert saved["h.0.mlp.c_fc.weight"].dtype == torch.int8 and "h.0.mlp.c_fc.scale" in saved
    float_size = (language_model / MODEL_FILE).stat().st_size
    assert (quantized_run / MODEL_FILE).stat().st_size <= 0.3 * float_size


def test_a_quantized_run_samples_evaluates_and_describes_itself(quantized_run, tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 40)
    capsys.readouterr()
    assert (
        gptlab(
            "sample",
            quantized_run,
            "--prompt",
            "the quick",
            "--max-new-tokens",
            5,
            "--device",
            "cpu",
        )
        == 0
    )
    assert capsys.readouterr().out.startswith("the quick")
    assert gptlab("eval", quantized_run, "--data", corpus, "--device", "cpu") == 0
    assert "perplexity" in capsys.readouterr().out
    assert gptlab("info", quantized_run) == 0
    info = capsys.readouterr().out
    assert "quantization    int8-dynamic" in info and "size on disk" in info


def test_the_demo_names_a_quantized_model_and_counts_its_float_source(
    quantized_run,
    language_model,  # noqa: F811
):
    from gptlab.demo.models import describe, load_model_spec

    model, tokenizer, info = load_model_spec(str(quantized_run), "cpu")
    line = describe(str(quantized_run), model, tokenizer, info)
    float_model, _, _ = load_run(language_model)
    assert "quantized int8-dynamic" in line
    assert f"{float_model.num_params() / 1e6:.2f}M parameters" in line


def test_quantize_int4_with_a_group_size(language_model, tmp_path):  # noqa: F811
    out = tmp_path / "int4"
    assert (
        gptlab(
            "quantize", language_model, "--method", "int4-weight", "--group-size", 16, "--out", out
        )
        == 0
    )
    saved = load_file(str(out / MODEL_FILE))
    assert saved["h.0.attn.c_attn.weight"].shape == (96, 16)  # 32 inputs, two a byte
    assert saved["h.0.attn.c_attn.scale"].shape == (96, 2)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "int9"], "unknown quantization method 'int9'"),
        (["--method", "int4-weight", "--group-size", "24"], "does not divide"),
        (["--method", "int8-weight", "--group-size", "32"], "--group-size is for int4-weight"),
        (["--method", "fp8", "--device", "cpu"], "fp8 cannot run on cpu: it needs a CUDA GPU"),
        (["--method", "int8-static"], "names no training data: pass --calibration-data"),
        (
            ["--method", "int8-static", "--calibration-data", "no-such.txt"],
            "no-such.txt is neither",
        ),
        (["--method", "int8-weight", "--calibration-batches", "4"], "is for int8-static"),
        (["--method", "int8-static", "--calibration-batches", "0"], "must be 1 or more"),
        (["--method", "int8-static", "--percentile", "99"], "is for --observer percentile"),
        (["--method", "fp8", "--observer", "max"], "--observer is for int8-static, not fp8"),
        (["--method", "int8-dynamic", "--fp8-scaling", "row"], "--fp8-scaling is for fp8"),
    ],
)
def test_bad_quantize_input_is_one_line_and_exit_2(language_model, tmp_path, capsys, args, message):  # noqa: F811
    capsys.readouterr()
    assert gptlab("quantize", language_model, *args, "--out", tmp_path / "q") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "q" / MODEL_FILE).exists()


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory, language_model) -> Path:  # noqa: F811
    """A classifier run on the tiny base (untrained: classify needs only its shape)."""
    from gptlab.tasks.classification import classifier_from_body
    from gptlab.tokenizers import load_tokenizer

    body, _, _ = load_run(language_model)
    torch.manual_seed(0)
    model = classifier_from_body(body, LABELS, pad_id=50256)
    run = tmp_path_factory.mktemp("runs") / "spam"
    run.mkdir()
    save_weights(model, run / MODEL_FILE)
    load_tokenizer(language_model / "tokenizer").save(run / "tokenizer")
    write_run_config(run, model.config, train={}, data={}, **task_sections(model))
    return run


def test_a_quantized_classifier_run_classifies_like_the_float_one(classifier_run, tmp_path, capsys):
    out = tmp_path / "spam-int8"
    assert gptlab("quantize", classifier_run, "--method", "int8-weight", "--out", out) == 0
    assert json.loads((out / "config.json").read_text())["classifier"]["labels"] == LABELS
    predictions = []
    for run in (classifier_run, out):
        capsys.readouterr()
        assert gptlab("classify", run, "WIN a free prize now", "--json", "--device", "cpu") == 0
        predictions.append(json.loads(capsys.readouterr().out.splitlines()[0]))
    (float_result, int8_result) = (p["probabilities"] for p in predictions)
    assert all(abs(float_result[name] - int8_result[name]) < 0.02 for name in LABELS)


def test_a_quantized_run_cannot_be_quantized_again(quantized_run, tmp_path, capsys):
    assert (
        gptlab("quantize", quantized_run, "--method", "int8-weight", "--out", tmp_path / "q") == 2
    )
    assert "quantized already" in capsys.readouterr().err


def test_a_quantized_run_is_not_exported_as_a_float_model(quantized_run, tmp_path, capsys):
    assert gptlab("export", quantized_run, "--out", tmp_path / "hf") == 2
    assert "is quantized (int8-dynamic)" in capsys.readouterr().err
    assert not (tmp_path / "hf").exists()


def test_an_adapter_run_is_refused_until_merged(language_model, tmp_path, capsys):  # noqa: F811
    """Refused from its config, before its base is looked for (LoRA on a quantized base, QLoRA,
    is issue 13's next step)."""
    adapter_run = tmp_path / "lora"
    shutil.copytree(language_model, adapter_run)
    config = json.loads((adapter_run / "config.json").read_text())
    config["adapter"] = {"type": "lora", "r": 4}
    (adapter_run / "config.json").write_text(json.dumps(config))
    assert gptlab("quantize", adapter_run, "--method", "int8-weight", "--out", tmp_path / "q") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"gptlab merge {adapter_run}" in err


@pytest.mark.parametrize("task", ["lm", "classify", "instruct"])
def test_full_finetuning_of_a_quantized_base_is_refused(quantized_run, tmp_path, capsys, task):
    data = tmp_path / ("corpus.txt" if task == "lm" else "data.csv")
    data.write_text("text,label\nhi,a\nyo,b\n" if task == "classify" else "hello there\n" * 50)
    status = gptlab("finetune", task, quantized_run, "--data", data, "--out", tmp_path / "ft")
    err = capsys.readouterr().err
    assert status == 2 and "its integer weights cannot train" in err and err.count("\n") == 1
    assert not (tmp_path / "ft").exists()


# --- QLoRA: an adapter trained over a quantized, frozen base ---------------------------------


@pytest.mark.parametrize("method", ["int8-weight", "int4-weight"])
def test_a_lora_step_on_a_quantized_base_trains_the_adapter_only(method):
    from gptlab.adapters import LoRAConfig, add_lora, freeze_base

    model = quantize_model(tiny_gpt(), QuantConfig(method, group_size=32)).train()
    add_lora(model, LoRAConfig(r=4, dropout=0.0))
    trainable, _ = freeze_base(model)
    frozen = {name: t.clone() for name, t in model.state_dict().items() if ".lora." not in name}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    idx = torch.randint(0, CONFIG.vocab_size, (4, 16), generator=torch.Generator().manual_seed(5))
    losses = []
    for _ in range(5):
        _, loss = model(idx[:, :-1], idx[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert trainable > 0 and losses[-1] < losses[0]
    for name, tensor in model.state_dict().items():
        if ".lora." not in name:  # the quantized base did not move, not even its floats
            assert torch.equal(tensor, frozen[name]), name
    with pytest.raises(ConfigError, match="cannot merge LoRA into a quantized base"):
        from gptlab.adapters import merge_lora

        merge_lora(model)


def test_qlora_finetunes_samples_and_reloads_over_a_quantized_run(language_model, tmp_path, capsys):  # noqa: F811
    base = tmp_path / "int8w"
    assert gptlab("quantize", language_model, "--method", "int8-weight", "--out", base) == 0
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 200)
    run = tmp_path / "qlora"
    status = gptlab(
        "finetune", "lm", base, "--data", corpus, "--out", run, "--lora", "r=4",
        "--max-iters", "4", "--batch-size", "2", "--eval-interval", "2", "--eval-iters", "1",
        "--device", "cpu", "--no-tensorboard",
    )  # fmt: skip
    assert status == 0
    saved = load_file(str(run / MODEL_FILE))
    assert saved and all(".lora." in name for name in saved)  # the base is referenced, not copied
    config = json.loads((run / "config.json").read_text())
    assert config["base"]["path"] == str(base.resolve())
    capsys.readouterr()
    assert gptlab("sample", run, "--prompt", "the quick", "--max-new-tokens", "4") == 0
    assert capsys.readouterr().out.startswith("the quick")


def test_an_adapter_over_int8_dynamic_is_refused(quantized_run, tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("hello there\n" * 50)
    args = ("finetune", "lm", quantized_run, "--data", corpus, "--out", tmp_path / "q", "--lora")
    assert gptlab(*args) == 2
    assert "no gradient reaches an adapter" in capsys.readouterr().err
