"""GPT: parity with transformers' GPT2LMHeadModel, size, tying, init, outputs, context, loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from gptlab.config import GPTConfig
from gptlab.errors import ContextLengthError, GptlabError
from gptlab.models.gpt import GPT, IGNORE_INDEX
from gptlab.pretrained import state_dict_to_hf

SMALL_CONFIGS = [
    GPTConfig(vocab_size=97, context_length=16, n_layer=2, n_head=4, n_embd=32),
    GPTConfig(
        vocab_size=50, context_length=24, n_layer=3, n_head=2, n_embd=16, layer_norm_eps=1e-6
    ),
    GPTConfig(vocab_size=128, context_length=8, n_layer=1, n_head=1, n_embd=8),
]


def random_gpt(config: GPTConfig, seed: int = 0) -> GPT:
    """A GPT whose every parameter is random and O(1)-sized, so that logits are O(1) too and
    a parity check at atol 1e-5 means something (the 0.02 init gives logits near 0)."""
    torch.manual_seed(seed)
    model = GPT(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("weight") and ("ln_" in name):
                param.normal_(1.0, 0.2)
            else:
                param.normal_(0.0, 0.2)
    return model


def hf_twin(model: GPT, attn_implementation: str):
    """transformers' GPT2LMHeadModel with the same shape and weights as `model`."""
    from transformers import GPT2Config, GPT2LMHeadModel

    c = model.config
    hf_config = GPT2Config(
        vocab_size=c.vocab_size,
        n_positions=c.context_length,
        n_embd=c.n_embd,
        n_layer=c.n_layer,
        n_head=c.n_head,
        layer_norm_epsilon=c.layer_norm_eps,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
        attn_implementation=attn_implementation,
    )
    hf = GPT2LMHeadModel(hf_config).eval()
    result = hf.load_state_dict(state_dict_to_hf(model.state_dict()), strict=False)
    assert result.missing_keys == ["lm_head.weight"] and not result.unexpected_keys  # tied to wte
    assert hf.lm_head.weight.data_ptr() == hf.transformer.wte.weight.data_ptr()
    return hf


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize(
    "config", SMALL_CONFIGS, ids=lambda c: f"L{c.n_layer}-H{c.n_head}-C{c.n_embd}"
)
def test_logits_equal_transformers_gpt2(config, attn_implementation):
    model = random_gpt(config)
    hf = hf_twin(model, attn_implementation)
    idx = torch.randint(
        0, config.vocab_size, (3, config.context_length), generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        logits, _ = model(idx, all_logits=True)
        expected = hf(input_ids=idx).logits
    assert logits.abs().max() > 1.0  # the weights are large enough for the check to bite
    assert_close(logits, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_loss_equals_transformers_loss_given_labels(attn_implementation):
    """HF shifts `labels` inside the model; gptlab takes targets already shifted, the last one
    (which has no next token) ignored."""
    model = random_gpt(SMALL_CONFIGS[0])
    hf = hf_twin(model, attn_implementation)
    idx = torch.randint(0, 97, (3, 16), generator=torch.Generator().manual_seed(2))
    targets = torch.cat([idx[:, 1:], torch.full((3, 1), IGNORE_INDEX)], dim=1)  # (B, T)
    with torch.no_grad():
        _, loss = model(idx, targets)
        expected = hf(input_ids=idx, labels=idx).loss
    assert_close(loss, expected, rtol=0, atol=1e-5)


def test_gpt2_preset_has_124_439_808_parameters():
    with torch.device("meta"):
        model = GPT(GPTConfig.from_preset("gpt2"))
    assert model.num_params() == 124_439_808
    assert model.num_params(non_embedding=True) == 124_439_808 - 1024 * 768  # without wpe


def test_lm_head_and_token_embedding_are_one_tensor():
    model = GPT(GPTConfig.from_preset("tiny"))
    assert model.lm_head.weight is model.wte.weight


def test_tied_weight_is_counted_once():
    model = GPT(GPTConfig.from_preset("tiny"))
    state = model.state_dict()
    assert model.num_params() == sum(
        t.numel() for name, t in state.items() if name != "lm_head.weight"
    )


@pytest.fixture(scope="module")
def medium_gpt() -> GPT:
    """Big enough for the init statistics to be tight: 6 layers of 256 wide, ~4.8M weights."""
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=2048, context_length=256, n_layer=6, n_head=8, n_embd=256))


def weights(model: GPT, suffixes: tuple[str, ...]) -> torch.Tensor:
    return torch.cat(
        [p.detach().flatten() for n, p in model.named_parameters() if n.endswith(suffixes)]
    )


def test_init_std_is_0_02(medium_gpt):
    for suffixes in (("wte.weight",), ("wpe.weight",), ("c_attn.weight",), ("c_fc.weight",)):
        w = weights(medium_gpt, suffixes)
        assert w.mean().abs() < 1e-3, suffixes
        assert w.std().item() == pytest.approx(0.02, rel=0.02), suffixes


def test_residual_projection_init_std_is_scaled_by_depth(medium_gpt):
    expected = 0.02 / math.sqrt(2 * medium_gpt.config.n_layer)
    for suffixes in (("attn.c_proj.weight",), ("mlp.c_proj.weight",)):
        w = weights(medium_gpt, suffixes)
        assert w.mean().abs() < 1e-3, suffixes
        assert w.std().item() == pytest.approx(expected, rel=0.02), suffixes


def test_init_biases_are_zero_and_layer_norms_identity(medium_gpt):
    for name, param in medium_gpt.named_parameters():
        if name.endswith("bias"):
            assert torch.all(param == 0), name
        elif "ln_" in name:
            assert torch.all(param == 1), name


def test_without_targets_logits_cover_only_the_last_position():
    model = random_gpt(GPTConfig.from_preset("tiny"))
    idx = torch.randint(0, 64, (2, 10))
    logits, loss = model(idx)
    assert logits.shape == (2, 1, 64) and loss is None
    all_logits, _ = model(idx, all_logits=True)
    assert all_logits.shape == (2, 10, 64)
    assert_close(logits, all_logits[:, -1:])


def test_with_targets_logits_cover_every_position():
    model = random_gpt(GPTConfig.from_preset("tiny"))
    idx = torch.randint(0, 64, (2, 10))
    logits, loss = model(idx, idx)
    assert logits.shape == (2, 10, 64) and loss.shape == ()


def test_with_targets_the_loss_trains_and_the_logits_are_detached():
    # A differentiable logits output would cost a zero (B, T, V) gradient in compiled backward.
    model = random_gpt(GPTConfig.from_preset("tiny"))
    idx = torch.randint(0, 64, (2, 10))
    logits, loss = model(idx, idx)
    assert loss.requires_grad and not logits.requires_grad
    all_logits, _ = model(idx, all_logits=True)
    assert all_logits.requires_grad  # the way to train on logits of one's own loss
    assert_close(logits, all_logits.detach())
    expected = F.cross_entropy(all_logits.view(-1, 64), idx.view(-1))
    assert_close(loss, expected)


def test_loss_is_mean_cross_entropy_of_next_tokens():
    model = random_gpt(GPTConfig.from_preset("tiny"))
    idx = torch.randint(0, 64, (2, 11), generator=torch.Generator().manual_seed(0))
    logits, loss = model(idx[:, :-1], idx[:, 1:])  # targets sliced from the input, not contiguous
    log_probs = torch.log_softmax(logits, dim=-1)  # (B, T, V)
    expected = -log_probs.gather(-1, idx[:, 1:, None]).mean()
    assert_close(loss, expected)


def test_ignore_index_targets_are_skipped_in_the_loss():
    model = random_gpt(GPTConfig.from_preset("tiny"))
    idx = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    targets = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(1))
    keep = torch.tensor([[1, 0, 1, 1, 0, 0, 1, 1], [0, 0, 0, 1, 1, 1, 1, 0]], dtype=torch.bool)
    logits, loss = model(idx, targets.masked_fill(~keep, IGNORE_INDEX))
    assert_close(loss, F.cross_entropy(logits[keep], targets[keep]))


def test_loss_of_a_bfloat16_model_is_computed_in_float32():
    """As transformers does: a bfloat16 loss near 4 would be rounded to steps of 1/32."""
    model = random_gpt(GPTConfig.from_preset("tiny")).to(torch.bfloat16)
    idx = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    logits, loss = model(idx, idx)
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    assert_close(loss, F.cross_entropy(logits.float().flatten(0, 1), idx.flatten()))


def test_crop_context_keeps_outputs_of_short_inputs():
    model = random_gpt(GPTConfig.from_preset("tiny"))  # context 32
    idx = torch.randint(0, 64, (2, 8))
    before, _ = model(idx, all_logits=True)
    model.crop_context(8)
    assert model.config.context_length == 8
    assert model.wpe.weight.shape == (8, 32)
    assert_close(model(idx, all_logits=True)[0], before, rtol=0, atol=0)


def test_crop_context_leaves_an_optimizer_built_before_it_training_wpe():
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("tiny"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.crop_context(8)
    before = model.wpe.weight.detach().clone()
    idx = torch.randint(0, 64, (2, 8))
    model(idx, idx)[1].backward()
    optimizer.step()
    assert not torch.equal(model.wpe.weight, before)


def test_crop_context_then_longer_input_raises():
    model = GPT(GPTConfig.from_preset("tiny"))
    model.crop_context(8)
    with pytest.raises(ContextLengthError):
        model(torch.zeros(1, 9, dtype=torch.long))


@pytest.mark.parametrize("length", [0, 33])
def test_crop_context_outside_1_to_context_raises(length):
    with pytest.raises(ContextLengthError):
        GPT(GPTConfig.from_preset("tiny")).crop_context(length)


def test_sinusoidal_positions_model_runs_and_has_no_wpe_parameters():
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("tiny", positions="sinusoidal"))
    assert not [name for name, _ in model.named_parameters() if name.startswith("wpe")]
    assert not [name for name in model.state_dict() if name.startswith("wpe")]
    idx = torch.randint(0, 64, (2, 32))
    logits, loss = model(idx, idx)
    loss.backward()
    assert torch.isfinite(logits).all() and torch.isfinite(loss)
    model.crop_context(16)
    assert model(idx[:, :16])[0].shape == (2, 1, 64)


def test_input_longer_than_context_raises_context_length_error():
    model = GPT(GPTConfig.from_preset("tiny"))
    with pytest.raises(ContextLengthError, match="33 tokens"):
        model(torch.zeros(1, 33, dtype=torch.long))
    assert issubclass(ContextLengthError, GptlabError)


def test_kv_cache_longer_than_context_raises_context_length_error():
    with pytest.raises(ContextLengthError):
        GPT(GPTConfig.from_preset("tiny")).new_kv_cache(batch_size=1, max_length=33)


def test_dropout_is_active_in_training_only():
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("tiny", dropout=0.5))
    idx = torch.randint(0, 64, (2, 8))
    model.eval()
    assert torch.equal(model(idx)[0], model(idx)[0])
    model.train()
    assert not torch.equal(model(idx)[0], model(idx)[0])


def test_parameter_names_are_gpt2s():
    names = {name for name, _ in GPT(GPTConfig.from_preset("tiny")).named_parameters()}
    assert {"wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias"} <= names
    assert {
        "h.1.ln_1.weight",
        "h.1.attn.c_attn.weight",
        "h.1.attn.c_proj.bias",
        "h.1.mlp.c_fc.weight",
    } <= names
    assert "lm_head.weight" in GPT(GPTConfig.from_preset("tiny")).state_dict()


def test_bias_false_config_has_no_biases():
    model = GPT(GPTConfig.from_preset("tiny", bias=False))
    assert not [name for name, _ in model.named_parameters() if name.endswith("bias")]
    assert isinstance(model.lm_head, nn.Linear)
