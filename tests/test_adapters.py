"""LoRA and prompt tuning on gptlab's models (gptlab.adapters), against the obvious forms: a
materialised W + ΔW for LoRA, a full forward for the prompt's KV cache."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gptlab.adapters import (
    LoRAConfig,
    PromptTuningConfig,
    adapter_kind,
    adapter_names,
    adapter_state,
    add_lora,
    attach,
    base_checksum,
    freeze_base,
    merge_lora,
    merged_model,
    remove_lora,
    set_adapter,
    unmerge_lora,
)
from gptlab.adapters.lora import lora_layers
from gptlab.config import ClassifierConfig, GPTConfig
from gptlab.errors import ConfigError, ContextLengthError
from gptlab.models.classifier import GPTClassifier
from gptlab.models.gpt import GPT

CONFIG = GPTConfig(vocab_size=64, context_length=32, n_layer=2, n_head=2, n_embd=16, dropout=0.0)


def tiny_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(CONFIG).eval()


def randomize_adapters(model, std: float = 0.1) -> None:
    """Give every adapter tensor a value: a new adapter's B is zero, so it would do nothing."""
    torch.manual_seed(1)
    for name, param in model.named_parameters():
        if ".lora." in name:
            torch.nn.init.normal_(param, std=std)


def tokens(B: int = 3, T: int = 10) -> torch.Tensor:
    return torch.randint(0, CONFIG.vocab_size, (B, T), generator=torch.Generator().manual_seed(2))


def logits_of(model, idx):
    with torch.no_grad():
        return model(idx, all_logits=True)[0]


# -- LoRA -----------------------------------------------------------------------------------


def test_a_new_lora_adapter_changes_nothing():
    model = tiny_gpt()
    before = logits_of(model, tokens())
    add_lora(model, LoRAConfig(r=4))
    assert torch.equal(logits_of(model, tokens()), before)


def test_lora_adds_scaled_BA_to_the_layer_output():
    model = tiny_gpt()
    add_lora(model, LoRAConfig(r=4, alpha=8, dropout=0.0, targets=("c_fc",)))
    randomize_adapters(model)
    linear = model.h[0].mlp.c_fc
    lora = linear.lora["default"]
    x = torch.randn(5, CONFIG.n_embd)
    expected = F.linear(x, linear.weight + 2.0 * lora.B["all"] @ lora.A["all"], linear.bias)
    torch.testing.assert_close(linear(x), expected, atol=1e-5, rtol=1e-5)


def test_lora_keeps_the_base_parameter_names_and_adds_its_own():
    model = tiny_gpt()
    names = set(model.state_dict())
    add_lora(model, LoRAConfig(r=2))
    added = set(model.state_dict()) - names
    assert names <= set(model.state_dict())
    assert added and all(".lora.default." in name for name in added)


def test_default_targets_are_the_attention_and_mlp_projections():
    model = tiny_gpt()
    adapted = add_lora(model, LoRAConfig())
    assert sorted(adapted) == sorted(
        f"h.{i}.{name}"
        for i in range(2)
        for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    )


def test_qkv_parts_update_only_their_third_of_c_attn():
    model = tiny_gpt()
    add_lora(model, LoRAConfig(r=2, dropout=0.0, targets=("q", "v")))
    randomize_adapters(model)
    C = CONFIG.n_embd
    delta = model.h[0].attn.c_attn.lora["default"].delta_weight()  # (3C, C)
    assert delta[:C].abs().sum() > 0 and delta[2 * C :].abs().sum() > 0
    assert torch.equal(delta[C : 2 * C], torch.zeros(C, C))  # the keys are untouched


def test_per_projection_lora_counts_one_update_per_query_key_and_value():
    fused, parts = tiny_gpt(), tiny_gpt()
    add_lora(fused, LoRAConfig(r=4, targets=("c_attn",)))
    add_lora(parts, LoRAConfig(r=4, targets=("q", "k", "v")))
    C, r, layers = CONFIG.n_embd, 4, CONFIG.n_layer
    assert freeze_base(fused)[0] == layers * r * (C + 3 * C)
    assert freeze_base(parts)[0] == layers * 3 * r * (C + C)


def test_merge_gives_the_same_outputs_without_the_hook_and_unmerge_restores_the_base():
    model = tiny_gpt()
    base_weight = model.h[1].attn.c_attn.weight.clone()
    add_lora(model, LoRAConfig(r=4, targets=("q", "k", "v", "c_proj", "c_fc")))
    randomize_adapters(model)
    adapted = logits_of(model, tokens())
    assert merge_lora(model) == 4 * CONFIG.n_layer  # c_attn, both c_proj, c_fc
    assert all(linear.lora.hook is None for linear in lora_layers(model).values())
    torch.testing.assert_close(logits_of(model, tokens()), adapted, atol=1e-5, rtol=1e-5)
    unmerge_lora(model)
    torch.testing.assert_close(model.h[1].attn.c_attn.weight, base_weight, atol=1e-6, rtol=0)
    torch.testing.assert_close(logits_of(model, tokens()), adapted, atol=1e-5, rtol=1e-5)


def test_merged_model_is_a_plain_gpt_with_the_adapted_outputs():
    model = tiny_gpt()
    add_lora(model, LoRAConfig(r=4))
    randomize_adapters(model)
    adapted = logits_of(model, tokens())
    plain = merged_model(model)
    assert adapter_kind(plain) is None
    assert set(plain.state_dict()) == set(tiny_gpt().state_dict())
    torch.testing.assert_close(logits_of(plain, tokens()), adapted, atol=1e-5, rtol=1e-5)


def test_several_adapters_share_one_base_and_switch():
    model = tiny_gpt()
    base = logits_of(model, tokens())
    add_lora(model, LoRAConfig(r=4), name="first")
    randomize_adapters(model)
    first = logits_of(model, tokens())
    add_lora(model, LoRAConfig(r=2, targets=("c_fc",)), name="second")
    assert adapter_names(model) == ["first", "second"]
    assert torch.equal(logits_of(model, tokens()), base)  # "second" is new: B = 0
    set_adapter(model, "first")
    torch.testing.assert_close(logits_of(model, tokens()), first)
    set_adapter(model, None)
    torch.testing.assert_close(logits_of(model, tokens()), base)
    remove_lora(model, "first")
    assert adapter_names(model) == ["second"]


def test_freeze_base_trains_only_the_adapter_and_a_new_head():
    model = GPTClassifier(tiny_gpt(), ClassifierConfig(labels=["a", "b"]))
    add_lora(model, LoRAConfig(r=2, targets=("c_attn",)))
    trainable, total = freeze_base(model)
    names = {name for name, p in model.named_parameters() if p.requires_grad}
    assert all(".lora." in name or name == "score.weight" for name in names)
    assert "score.weight" in names
    assert trainable == CONFIG.n_layer * 2 * (CONFIG.n_embd + 3 * CONFIG.n_embd) + 2 * CONFIG.n_embd
    assert total == sum(p.numel() for p in model.parameters())


def test_lora_on_the_head_freezes_the_head_and_adapts_it():
    model = GPTClassifier(tiny_gpt(), ClassifierConfig(labels=["a", "b"]))
    add_lora(model, LoRAConfig(r=2, targets=("score",)))
    freeze_base(model)
    assert not model.score.weight.requires_grad
    assert model.score.lora["default"].A["all"].requires_grad


def test_adapter_state_holds_the_adapter_and_the_head_only():
    model = GPTClassifier(tiny_gpt(), ClassifierConfig(labels=["a", "b"]))
    add_lora(model, LoRAConfig(r=2))
    state = adapter_state(model)
    assert "score.weight" in state
    assert all(".lora." in name for name in state if name != "score.weight")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (dict(targets=("c_atn",)), "matches the LoRA target 'c_atn'"),
        (dict(targets=("lm_head",)), "cannot target lm_head"),
        (dict(targets=("c_attn", "q")), "not both"),
    ],
)
def test_bad_lora_targets_are_clear_errors(config, message):
    with pytest.raises(ConfigError, match=message):
        add_lora(tiny_gpt(), LoRAConfig(**config))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("r=0", "rank r must be a whole number of 1 or more"),
        ("r=two", "whole number"),
        ("rank=4", "unknown LoRA setting 'rank'"),
        ("dropout=1.5", "dropout must be in"),
        ("targets=", "at least one LoRA target"),
        ("c_attn", "write key=value"),
    ],
)
def test_bad_lora_settings_are_clear_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        LoRAConfig.parse(text)


def test_lora_settings_parse_with_targets_running_to_the_next_key():
    config = LoRAConfig.parse("r=8,targets=q,k,v,c_fc,alpha=32")
    assert (config.r, config.alpha, config.targets) == (8, 32.0, ("q", "k", "v", "c_fc"))
    assert LoRAConfig.parse("") == LoRAConfig()


def test_glob_targets_select_modules_by_full_name():
    adapted = add_lora(tiny_gpt(), LoRAConfig(targets=("h.1.*",)))
    assert sorted(adapted) == [
        "h.1.attn.c_attn",
        "h.1.attn.c_proj",
        "h.1.mlp.c_fc",
        "h.1.mlp.c_proj",
    ]


def test_lora_trains_under_compile():
    model = tiny_gpt().train()
    add_lora(model, LoRAConfig(r=2, dropout=0.0))
    freeze_base(model)
    compiled = torch.compile(model, backend="eager")
    _, loss = compiled(tokens(), targets=tokens())
    loss.backward()
    grads = [p.grad for name, p in model.named_parameters() if name.endswith("B.all")]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


# -- prompt tuning --------------------------------------------------------------------------


def test_a_prompt_is_n_trained_embeddings_and_shortens_the_context():
    model = attach(tiny_gpt(), PromptTuningConfig(num_tokens=4))
    assert model.config.context_length == CONFIG.context_length - 4
    trainable, _ = freeze_base(model)
    assert trainable == 4 * CONFIG.n_embd
    assert list(adapter_state(model)) == ["gpt.wte.prompt"]


def test_a_prompt_is_the_embeddings_before_the_text():
    """The prompt-tuned logits of the text equal those of the plain GPT run on the prompt's
    embeddings followed by the text's (computed here by hand, position by position)."""
    gpt = tiny_gpt()
    model = attach(gpt, PromptTuningConfig(num_tokens=3))
    idx = tokens(2, 6)
    prompt = model.prompt.detach()
    x = torch.cat([prompt.expand(2, -1, -1), F.embedding(idx, gpt.wte.weight)], dim=1)
    x = x + gpt.wpe(torch.arange(9))
    for block in gpt.h:
        x = block(x, None, None, None)
    expected = gpt.lm_head(gpt.ln_f(x))[:, 3:]
    torch.testing.assert_close(logits_of(model, idx), expected, atol=1e-5, rtol=1e-5)


def test_the_prompt_in_the_kv_cache_gives_the_full_forward_logits():
    model = attach(tiny_gpt(), PromptTuningConfig(num_tokens=4))
    idx = tokens(2, 8)
    full = logits_of(model, idx)
    with torch.no_grad():
        cache = model.new_kv_cache(2, 12)
        prefill, _ = model(idx[:, :5], kv_cache=cache, input_pos=torch.arange(5), all_logits=True)
        step, _ = model(idx[:, 5:6], kv_cache=cache, input_pos=torch.tensor([5]))
    torch.testing.assert_close(prefill, full[:, :5], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(step[:, 0], full[:, 5], atol=1e-5, rtol=1e-5)


def test_generation_with_a_prompt_matches_greedy_decoding_by_full_forwards():
    from gptlab.generation import GenerationConfig, generate

    model = attach(tiny_gpt(), PromptTuningConfig(num_tokens=4))
    prompt = tokens(1, 5)[0].tolist()
    out = generate(
        model, [prompt], GenerationConfig(max_new_tokens=6, strategy="greedy", eos_id=None)
    )[0]
    ids = list(prompt)
    for _ in range(6):
        ids.append(int(logits_of(model, torch.tensor([ids]))[0, -1].argmax()))
    assert out == ids[len(prompt) :]


def test_a_classifier_with_a_prompt_reads_the_same_with_left_or_right_padding():
    torch.manual_seed(0)
    rows = [tokens(1, 7)[0], tokens(1, 4)[0]]
    outputs = []
    for side in ("right", "left"):
        body = tiny_gpt()
        model = attach(
            GPTClassifier(body, ClassifierConfig(labels=["a", "b"], padding_side=side)),
            PromptTuningConfig(num_tokens=3),
        )
        torch.manual_seed(3)
        torch.nn.init.normal_(model.transformer.prompt, std=0.5)
        torch.nn.init.normal_(model.score.weight, std=0.5)
        idx = torch.zeros(2, 7, dtype=torch.long)
        mask = torch.zeros(2, 7, dtype=torch.bool)
        for i, row in enumerate(rows):
            span = slice(0, len(row)) if side == "right" else slice(7 - len(row), 7)
            idx[i, span], mask[i, span] = row, True
        with torch.no_grad():
            outputs.append(model(idx, mask)[0])
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-5, rtol=1e-5)


def test_a_prompt_from_text_starts_from_its_tokens_embeddings():
    class Tokenizer:
        def encode(self, text):
            return [5, 9]

    gpt = tiny_gpt()
    model = attach(gpt, PromptTuningConfig(num_tokens=5, init="text", init_text="hi"), Tokenizer())
    torch.testing.assert_close(model.prompt.detach(), gpt.wte.weight.detach()[[5, 9, 5, 9, 5]])


def test_a_prompt_that_fills_the_context_is_refused():
    with pytest.raises(ConfigError, match="leaves no room"):
        attach(tiny_gpt(), PromptTuningConfig(num_tokens=CONFIG.context_length))
    model = attach(tiny_gpt(), PromptTuningConfig(num_tokens=4))
    with pytest.raises(ContextLengthError):
        model(torch.zeros(1, CONFIG.context_length - 3, dtype=torch.long))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (dict(num_tokens=0), "1 or more virtual tokens"),
        (dict(num_tokens=4, init="zeros"), "prompt init must be one of"),
        (dict(num_tokens=4, init="text"), "needs the text"),
    ],
)
def test_bad_prompt_settings_are_clear_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        PromptTuningConfig(**values)


# -- the base's fingerprint -----------------------------------------------------------------


def test_the_base_checksum_sees_any_change_of_weights_and_ignores_the_tie():
    a, b = tiny_gpt(), tiny_gpt()
    assert base_checksum(a) == base_checksum(b)
    with torch.no_grad():
        b.ln_f.weight[0] += 1e-3
    assert base_checksum(a) != base_checksum(b)
    assert base_checksum(a) != base_checksum(tiny_gpt(seed=1))


def test_the_base_checksum_leaves_attached_adapters_out():
    model = tiny_gpt()
    before = base_checksum(model)
    add_lora(model, LoRAConfig(r=2))
    randomize_adapters(model)
    assert base_checksum(model) == before
