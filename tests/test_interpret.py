"""Activations read through hooks equal transformers' GPT-2, edits do what they say, and each
analysis holds to its definition."""

from __future__ import annotations

import copy

import pytest
import torch

from gptlab.config import GPTConfig
from gptlab.errors import ConfigError, ContextLengthError
from gptlab.interpret import (
    hooked,
    mean_heads,
    patch_heads,
    patch_positions,
    remove_direction,
    run_with_cache,
    run_with_edits,
    zero_heads,
)
from gptlab.interpret.attribution import direct_logit_attribution
from gptlab.interpret.heads import (
    HeadScoreRecorder,
    first_crossing,
    head_scores,
    repeated_random_tokens,
    scores_from_patterns,
)
from gptlab.interpret.lens import logit_lens
from gptlab.interpret.patching import activation_patching, answer_metric, head_ablation
from gptlab.models.gpt import GPT
from gptlab.tokenizers import CharTokenizer

TEXT = "ROMEO:\nTo be, or not to be, that is the question.\nabcdefghijklmnopqrstuvwxyz\n"


def tiny_model(seed: int = 0, **changes) -> GPT:
    torch.manual_seed(seed)
    config = GPTConfig.from_preset("tiny", vocab_size=40, **changes)
    return GPT(config).eval()


@pytest.fixture(scope="module")
def tokenizer():
    return CharTokenizer.from_text(TEXT)


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    return GPT(GPTConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size)).eval()


def ids(n: int = 12, batch: int = 2, vocab: int = 40, seed: int = 1) -> torch.Tensor:
    return torch.randint(vocab, (batch, n), generator=torch.Generator().manual_seed(seed))


# ---- fidelity: the same numbers as transformers' GPT-2 ----


@pytest.fixture(scope="module", params=[(2, 2, 32), (3, 4, 48)], ids=["2x2x32", "3x4x48"])
def hf_pair(request):
    """A transformers GPT2LMHeadModel (eager attention, so it returns its weights) and a gptlab
    GPT holding the same weights."""
    transformers = pytest.importorskip("transformers")
    from gptlab.pretrained import config_from_hf, state_dict_from_hf

    n_layer, n_head, n_embd = request.param
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=97,
        n_positions=64,
        n_layer=n_layer,
        n_head=n_head,
        n_embd=n_embd,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    config._attn_implementation = "eager"  # output_attentions needs the eager path
    hf = transformers.GPT2LMHeadModel(config).eval()
    model = GPT(config_from_hf(config))
    model.load_state_dict(state_dict_from_hf(hf.state_dict()), strict=False)
    return hf, model.eval()


def test_cached_residual_stream_equals_transformers_hidden_states(hf_pair):
    hf, model = hf_pair
    idx = ids(20, vocab=97)
    with torch.no_grad():
        out = hf(input_ids=idx, output_hidden_states=True)
        _, cache = run_with_cache(model, idx)
    n_layer = len(model.h)
    # transformers' hidden states: the stream entering each block, then ln_f of the last one
    for layer in range(n_layer):
        torch.testing.assert_close(
            cache[f"blocks.{layer}.resid_pre"], out.hidden_states[layer], atol=1e-5, rtol=0
        )
    final = model.ln_f(cache[f"blocks.{n_layer - 1}.resid_post"])
    torch.testing.assert_close(final, out.hidden_states[n_layer], atol=1e-5, rtol=0)


def test_cached_attention_patterns_equal_transformers_attentions(hf_pair):
    hf, model = hf_pair
    idx = ids(20, vocab=97)
    with torch.no_grad():
        out = hf(input_ids=idx, output_attentions=True)
        _, cache = run_with_cache(model, idx, "blocks.*.attn.pattern")
    assert len(out.attentions) == len(model.h)
    for layer, expected in enumerate(out.attentions):
        torch.testing.assert_close(
            cache[f"blocks.{layer}.attn.pattern"], expected, atol=1e-5, rtol=0
        )


def test_caching_does_not_change_the_logits():
    model = tiny_model()
    idx = ids()
    with torch.no_grad():
        plain, _ = model(idx, all_logits=True)
        cached, cache = run_with_cache(model, idx)
    assert torch.equal(plain, cached)
    assert "blocks.1.attn.pattern" in cache and "blocks.1.mlp.post" in cache


def test_zero_ablation_hook_equals_zeroing_the_heads_weights():
    model = tiny_model(n_layer=3, n_head=4, n_embd=32)
    layer, head, hs = 1, 2, 8
    ablated = copy.deepcopy(model)
    with torch.no_grad():
        # the head's slice of c_proj's input columns: what it writes to the stream
        ablated.h[layer].attn.c_proj.weight[:, head * hs : (head + 1) * hs] = 0.0
        expected, _ = ablated(ids(), all_logits=True)
        edited = run_with_edits(model, ids(), {f"blocks.{layer}.attn.z": zero_heads(head)})
        plain, _ = model(ids(), all_logits=True)
    torch.testing.assert_close(edited, expected, atol=1e-6, rtol=0)
    assert not torch.allclose(edited, plain, atol=1e-4)


def test_hooks_are_removed_after_the_run():
    model = tiny_model()
    run_with_edits(model, ids(), {"blocks.0.attn.z": zero_heads(0)})
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_head_results_sum_to_the_attention_output():
    model = tiny_model()
    _, cache = run_with_cache(model, ids(), ["blocks.0.attn.result", "blocks.0.attn.out"])
    summed = cache["blocks.0.attn.result"].sum(dim=2) + model.h[0].attn.c_proj.bias
    torch.testing.assert_close(summed, cache["blocks.0.attn.out"], atol=1e-6, rtol=0)


def test_the_stream_is_the_sum_of_what_the_blocks_write():
    model = tiny_model()
    _, cache = run_with_cache(model, ids())
    stream = cache["embed"] + cache["pos_embed"]
    for layer in range(2):
        stream = stream + cache[f"blocks.{layer}.attn.out"]
        torch.testing.assert_close(stream, cache[f"blocks.{layer}.resid_mid"])
        stream = stream + cache[f"blocks.{layer}.mlp.out"]
        torch.testing.assert_close(stream, cache[f"blocks.{layer}.resid_post"])


def test_a_names_filter_caches_only_those():
    model = tiny_model()
    _, cache = run_with_cache(model, ids(), ["blocks.*.resid_post", "embed"])
    assert sorted(cache.keys()) == ["blocks.0.resid_post", "blocks.1.resid_post", "embed"]


def test_patching_every_position_of_the_embeddings_gives_the_other_prompts_logits():
    model = tiny_model()
    clean, other = ids(seed=1), ids(seed=2)
    clean_logits, cache = run_with_cache(model, clean, "blocks.0.resid_pre")
    patched = run_with_edits(
        model, other, {"blocks.0.resid_pre": patch_positions(cache["blocks.0.resid_pre"])}
    )
    torch.testing.assert_close(patched, clean_logits)


def test_q_k_v_edits_reach_the_attention():
    model = tiny_model()
    _, cache = run_with_cache(model, ids(seed=1), "blocks.1.attn.v")
    source = cache["blocks.1.attn.v"]
    _, patched = run_with_cache(
        model, ids(seed=2), "blocks.1.attn.v", {"blocks.1.attn.v": patch_heads(source, 0, 1)}
    )
    torch.testing.assert_close(patched["blocks.1.attn.v"], source)


def test_removing_a_direction_leaves_nothing_along_it():
    model = tiny_model()
    direction = torch.randn(32, generator=torch.Generator().manual_seed(3))
    _, cache = run_with_cache(
        model,
        ids(),
        "blocks.0.resid_post",
        {"blocks.0.resid_post": remove_direction(direction)},
    )
    along = cache["blocks.0.resid_post"] @ (direction / direction.norm())
    assert along.abs().max() < 1e-5


def test_mean_ablation_writes_the_mean():
    model = tiny_model()
    means = torch.arange(2 * 16, dtype=torch.float32).view(2, 16)
    _, cache = run_with_cache(
        model, ids(), "blocks.0.attn.z", {"blocks.0.attn.z": mean_heads(means, 1)}
    )
    assert torch.equal(cache["blocks.0.attn.z"][:, :, 1], means[1].expand(2, 12, 16))


@pytest.mark.parametrize(
    "names, edits, words",
    [
        ("blocks.9.resid_post", None, "no activation"),
        ((), {"blocks.0.attn.pattern": zero_heads(0)}, "read but not edited"),
        ((), {"blocks.0.resid_mid": zero_heads(0)}, "read but not edited"),
    ],
)
def test_unknown_and_read_only_names_are_user_errors(names, edits, words):
    with pytest.raises(ConfigError, match=words):
        run_with_cache(tiny_model(), ids(), names, edits)


# ---- analyses ----


def test_the_logit_lens_of_the_last_layer_is_the_models_prediction(model, tokenizer):
    lens = logit_lens(model, tokenizer, "To be, or not", k=3)
    idx = torch.tensor([tokenizer.encode("To be, or not")])
    with torch.no_grad():
        logits, _ = model(idx, all_logits=True)
    probs = torch.softmax(logits[0], dim=-1)
    top = probs.topk(3, dim=-1)
    assert lens.layers == ["embed", "block 0", "block 1"]
    assert torch.equal(lens.top_ids[-1], top.indices)
    torch.testing.assert_close(lens.top_probs[-1], top.values)
    targets = idx[0, 1:]
    torch.testing.assert_close(lens.next_probs[-1], probs[:-1].gather(-1, targets[:, None])[:, 0])


def test_a_prompt_longer_than_the_context_is_refused(model, tokenizer):
    with pytest.raises(ContextLengthError, match="longer than the model's context of 32"):
        logit_lens(model, tokenizer, "a" * 33)


def test_head_scores_read_the_three_behaviours_off_the_patterns():
    n, T = 4, 8
    previous = torch.zeros(T, T)
    previous[0, 0] = 1.0
    previous[torch.arange(1, T), torch.arange(T - 1)] = 1.0
    first = torch.zeros(T, T)
    first[:, 0] = 1.0
    induction = first.clone()
    second = torch.arange(n, T)
    induction[second] = 0.0
    induction[second, second - n + 1] = 1.0
    patterns = torch.stack([previous, first, induction])[None]  # (1, 3 heads, T, T)
    scores = scores_from_patterns(patterns, n)
    torch.testing.assert_close(scores["previous_token"], torch.tensor([1.0, 1 / 7, 1 / 7]))
    torch.testing.assert_close(scores["first_token"], torch.tensor([1 / 7, 1.0, 3 / 7]))
    torch.testing.assert_close(scores["induction"], torch.tensor([0.0, 0.0, 1.0]))


def test_repeated_random_tokens_repeat():
    idx = repeated_random_tokens(50, 10, 3, seed=4)
    assert idx.shape == (3, 20) and torch.equal(idx[:, :10], idx[:, 10:])


def test_head_scores_of_an_untrained_model_are_those_of_uniform_attention():
    scores = head_scores(tiny_model(), length=16, batch=4)
    assert scores.induction.shape == (2, 2) and scores.length == 16
    # an untrained model attends nearly uniformly: 1/(t+1) on average, far from 1
    assert scores.induction.max() < 0.2 and scores.previous_token.max() < 0.3


def test_direct_attributions_sum_to_the_logit(model, tokenizer):
    attribution = direct_logit_attribution(model, tokenizer, "To be, or not", "t")
    assert attribution.heads.shape == (2, 2) and attribution.mlps.shape == (2,)
    assert attribution.total == pytest.approx(attribution.logit, abs=1e-4)
    versus = direct_logit_attribution(model, tokenizer, "To be, or not", "t", versus="a")
    assert versus.total == pytest.approx(versus.logit, abs=1e-4)


def test_attribution_of_more_than_one_token_is_a_user_error(model, tokenizer):
    with pytest.raises(ConfigError, match="is 2 tokens"):
        direct_logit_attribution(model, tokenizer, "To be", "to")


def test_batched_patching_equals_one_patch_at_a_time(model, tokenizer):
    clean, corrupt = "To be, or not", "To qe, or not"
    answer, wrong = tokenizer.encode("t")[0], tokenizer.encode("a")[0]
    patching = activation_patching(model, tokenizer, clean, corrupt, answer, wrong)
    metric = answer_metric(answer, wrong)
    clean_ids = torch.tensor([tokenizer.encode(clean)])
    corrupt_ids = torch.tensor([tokenizer.encode(corrupt)])
    _, cache = run_with_cache(model, clean_ids)
    layer, position, head = 1, 3, 1
    name = f"blocks.{layer}.resid_pre"
    with torch.no_grad():
        one = run_with_edits(model, corrupt_ids, {name: patch_positions(cache[name], [position])})
    assert patching.positions[layer, position] == pytest.approx(float(metric(one)[0]), abs=1e-5)
    name = f"blocks.{layer}.attn.z"
    with torch.no_grad():
        one = run_with_edits(model, corrupt_ids, {name: patch_heads(cache[name], head)})
    assert patching.heads[layer, head] == pytest.approx(float(metric(one)[0]), abs=1e-5)
    # at layer 0 only the corrupted position matters, and patching it restores the clean run
    restored = patching.restored(patching.positions[0])
    assert restored[3] == pytest.approx(1.0, abs=1e-4)
    assert restored[torch.arange(13) != 3].abs().max() < 1e-4


def test_patching_prompts_of_different_lengths_is_a_user_error(model, tokenizer):
    with pytest.raises(ConfigError, match="same length"):
        activation_patching(model, tokenizer, "To be", "To be,", 0)


def test_zero_ablation_loss_is_the_loss_without_the_head():
    model = tiny_model()
    x = ids(17, batch=3, seed=5)
    batches = [(x[:, :-1], x[:, 1:])]
    ablation = head_ablation(model, batches, "zero")
    ablated = copy.deepcopy(model)
    with torch.no_grad():
        ablated.h[1].attn.c_proj.weight[:, 0:16] = 0.0
        _, expected = ablated(*batches[0])
        _, base = model(*batches[0])
    assert ablation.base_loss == pytest.approx(float(base), abs=1e-6)
    assert ablation.losses[1, 0] == pytest.approx(float(expected), abs=1e-5)
    mean = head_ablation(model, batches, "mean")
    assert mean.losses.shape == (2, 2) and mean.base_loss == ablation.base_loss


def test_the_recorder_scores_heads_through_training():
    from gptlab.training.config import TrainConfig
    from gptlab.training.trainer import Trainer

    model = tiny_model()
    data = ids(33, batch=4, seed=6)
    recorder = HeadScoreRecorder(every=2, length=8, batch=2)
    config = TrainConfig(max_iters=5, batch_size=4, eval_interval=0, warmup_iters=0, device="cpu")
    trainer = Trainer(
        model,
        config,
        train_batch=lambda step, index: (data[:, :-1], data[:, 1:]),
        device=torch.device("cpu"),
        callbacks=[recorder],
    )
    trainer.fit()
    steps, values = recorder.max_scores()
    assert steps == [0, 2, 4, 5] and len(values) == 4
    assert model.training  # the recorder hands the model back in training mode
    assert first_crossing(steps, [0.1, 0.2, 0.5, 0.9], 0.4) == 4
    assert first_crossing(steps, [0.1, 0.2, 0.3, 0.3], 0.4) is None


def test_hooked_caches_every_forward_inside_the_block():
    model = tiny_model()
    with hooked(model, "blocks.0.resid_post") as cache:
        model(ids())
    assert cache["blocks.0.resid_post"].shape == (2, 12, 32)


def test_a_copy_of_random_tokens_has_no_repeats_when_the_vocabulary_allows():
    idx = repeated_random_tokens(torch.tensor([3, 5, 7, 9, 11, 13]), 6, 4, seed=2)
    assert all(len(set(row[:6].tolist())) == 6 for row in idx)
    assert set(idx.flatten().tolist()) <= {3, 5, 7, 9, 11, 13}


def test_patterns_follow_the_mask_the_model_ran_under():
    from gptlab.nn.attention import attention_mask, attention_pattern, causal_mask

    model = tiny_model()
    x = ids(6, batch=2)
    padding = torch.tensor([[True] * 6, [False, False] + [True] * 4])  # row 1 left-padded
    with hooked(model, ["blocks.0.attn.pattern"]) as cache:
        model(x, padding_mask=padding, all_logits=True)
    pattern = cache["blocks.0.attn.pattern"]  # (2, nh, 6, 6)
    assert pattern[1, :, 2:, :2].abs().max() == 0.0  # real tokens never look at the padding
    q, k = cache["blocks.0.attn.q"].transpose(1, 2), cache["blocks.0.attn.k"].transpose(1, 2)
    expected = attention_pattern(q, k, attention_mask(causal_mask(6), padding))
    torch.testing.assert_close(pattern, expected)
