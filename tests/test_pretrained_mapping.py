"""Hugging Face GPT-2 <-> gptlab: state dict names and layouts, and configs."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.testing import assert_close

from gptlab.config import GPTConfig
from gptlab.errors import CheckpointError
from gptlab.models.gpt import GPT
from gptlab.pretrained import config_from_hf, config_to_hf, state_dict_from_hf, state_dict_to_hf

CONFIG = GPTConfig(
    vocab_size=61, context_length=12, n_layer=2, n_head=2, n_embd=16, layer_norm_eps=1e-6
)


def hf_gpt2(config: GPTConfig = CONFIG, seed: int = 0):
    """A randomly initialised transformers GPT2LMHeadModel of the shape of `config`."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    values = {**config_to_hf(config), "bos_token_id": 0, "eos_token_id": 0}
    return GPT2LMHeadModel(GPT2Config(**values, attn_implementation="eager")).eval()


def gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(CONFIG).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.3)  # biases and norms too, so a missed tensor shows
    return model


def test_round_trip_gptlab_to_hf_to_gptlab_is_exact():
    model = gpt()
    state = state_dict_from_hf(state_dict_to_hf(model.state_dict()))
    original = model.state_dict()
    assert state.keys() == original.keys()
    for name, tensor in original.items():
        assert torch.equal(state[name], tensor), name
    restored = GPT(CONFIG)
    restored.load_state_dict(state, strict=True)
    assert restored.lm_head.weight is restored.wte.weight


def test_hf_state_dict_loads_strictly_and_gives_hf_logits():
    hf = hf_gpt2()
    model = GPT(CONFIG).eval()
    model.load_state_dict(state_dict_from_hf(hf.state_dict()), strict=True)
    idx = torch.randint(0, 61, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert_close(model(idx, all_logits=True)[0], hf(input_ids=idx).logits, rtol=0, atol=1e-5)


def test_hf_gpt2model_state_dict_without_head_ties_lm_head_to_wte():
    hf = hf_gpt2()
    state = state_dict_from_hf(hf.transformer.state_dict())  # GPT2Model: no prefix, no head
    assert torch.equal(state["lm_head.weight"], hf.transformer.wte.weight)
    GPT(CONFIG).load_state_dict(state, strict=True)


def test_conv1d_weights_are_transposed_and_the_rest_kept():
    model = gpt()
    hf_state = state_dict_to_hf(model.state_dict())
    C = CONFIG.n_embd
    assert hf_state["transformer.h.0.attn.c_attn.weight"].shape == (C, 3 * C)  # Conv1D: (in, out)
    for suffix in (
        "attn.c_attn.weight",
        "attn.c_proj.weight",
        "mlp.c_fc.weight",
        "mlp.c_proj.weight",
    ):
        assert torch.equal(
            hf_state[f"transformer.h.1.{suffix}"], model.state_dict()[f"h.1.{suffix}"].t()
        )
    assert torch.equal(hf_state["transformer.h.1.attn.c_attn.bias"], model.h[1].attn.c_attn.bias)
    assert torch.equal(hf_state["transformer.wpe.weight"], model.wpe.weight)


def test_state_dict_to_hf_has_hf_names_without_the_tied_head():
    hf_state = state_dict_to_hf(gpt().state_dict())
    expected = {name for name in hf_gpt2().state_dict() if name != "lm_head.weight"}
    assert set(hf_state) == expected


def test_hf_legacy_attention_buffers_are_dropped():
    hf_state = dict(hf_gpt2().state_dict())
    hf_state["transformer.h.0.attn.bias"] = torch.ones(1, 1, 12, 12, dtype=torch.bool).tril()
    hf_state["transformer.h.0.attn.masked_bias"] = torch.tensor(-1e4)
    state = state_dict_from_hf(hf_state)
    assert "h.0.attn.bias" not in state and "h.0.attn.masked_bias" not in state
    assert "h.0.attn.c_attn.bias" in state  # a real bias, whose name ends alike, is kept
    GPT(CONFIG).load_state_dict(state, strict=True)


def test_config_round_trips_through_transformers_gpt2config():
    from transformers import GPT2Config

    hf_config = GPT2Config(**config_to_hf(CONFIG))
    assert config_from_hf(hf_config) == CONFIG
    assert config_from_hf(hf_config.to_dict()) == CONFIG


def test_end_of_text_id_is_exported_only_where_the_vocabulary_has_it():
    assert config_to_hf(GPTConfig.from_preset("gpt2"))["eos_token_id"] == 50256
    small = config_to_hf(GPTConfig.from_preset("shakespeare-char-cpu"))  # 65 characters
    assert small["bos_token_id"] is None and small["eos_token_id"] is None


def test_the_local_base_preset_is_a_gpt2_architecture_with_gpt2s_vocabulary():
    config = GPTConfig.from_preset("gpt2-mini")
    values = config_to_hf(config)  # raises for a shape GPT-2's format cannot hold
    assert (values["vocab_size"], values["eos_token_id"], values["n_positions"]) == (
        50257,
        50256,
        256,
    )
    assert config_from_hf(values) == dataclasses.replace(config, dropout=0.0)


def test_config_from_hf_reads_gpt2_shape_and_eps():
    from transformers import GPT2Config

    hf_config = GPT2Config(
        n_positions=64, n_embd=48, n_layer=3, n_head=6, vocab_size=99, layer_norm_epsilon=1e-4
    )
    expected = GPTConfig(
        vocab_size=99, context_length=64, n_layer=3, n_head=6, n_embd=48, layer_norm_eps=1e-4
    )
    assert config_from_hf(hf_config) == expected


def test_an_exact_gelu_model_exports_as_hf_gelu_and_gives_hf_logits():
    config = dataclasses.replace(CONFIG, gelu="none")
    values = config_to_hf(config)
    assert values["activation_function"] == "gelu"  # transformers' name for the erf form
    assert config_from_hf(values) == config
    hf = hf_gpt2(config)
    model = GPT(config).eval()
    model.load_state_dict(state_dict_from_hf(hf.state_dict()), strict=True)
    idx = torch.randint(0, 61, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert_close(model(idx, all_logits=True)[0], hf(input_ids=idx).logits, rtol=0, atol=1e-5)


def test_config_from_hf_accepts_pytorch_tanh_gelu():
    values = {**config_to_hf(CONFIG), "activation_function": "gelu_pytorch_tanh"}
    assert config_from_hf(values) == CONFIG


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"model_type": "llama"}, "model_type"),
        ({"activation_function": "relu"}, "GELU"),
        ({"n_inner": 3 * CONFIG.n_embd}, "n_inner"),
    ],
)
def test_config_from_hf_rejects_what_gptlab_cannot_represent(override, message):
    with pytest.raises(CheckpointError, match=message):
        config_from_hf({**config_to_hf(CONFIG), **override})


@pytest.mark.parametrize("override", [{"positions": "sinusoidal"}, {"bias": False}])
def test_config_to_hf_rejects_non_gpt2_architectures(override):
    with pytest.raises(CheckpointError):
        config_to_hf(GPTConfig(**{**CONFIG.to_dict(), **override}))
