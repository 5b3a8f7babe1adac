"""Each logits processor against the transformers LogitsProcessor it replaces, on random logits."""

from __future__ import annotations

import pytest
import torch

from gptlab.generation import (
    GenerationConfig,
    apply_temperature,
    min_p_filter,
    next_token,
    no_repeat_ngram,
    repetition_penalty,
    sample_from,
    top_k_filter,
    top_p_filter,
)

transformers = pytest.importorskip("transformers")
from transformers.generation import logits_process as hf  # noqa: E402

B, V = 4, 50


def random_logits(seed: int = 0, with_inf: bool = True) -> torch.Tensor:
    """Spread-out random logits; some already -inf, as after an earlier filter."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, V, generator=g) * 3
    if with_inf:
        logits[torch.rand(B, V, generator=g) < 0.2] = float("-inf")
    return logits


def random_ids(seed: int, T: int = 30, alphabet: int = 8) -> torch.Tensor:
    """Token histories from a small alphabet, so that tokens and n-grams repeat."""
    return torch.randint(0, alphabet, (B, T), generator=torch.Generator().manual_seed(seed))


UNUSED_IDS = torch.zeros(B, 1, dtype=torch.long)  # warpers take input_ids but do not read them


@pytest.mark.parametrize("t", [0.3, 1.0, 1.7])
def test_temperature_matches_transformers(t):
    logits = random_logits()
    expected = hf.TemperatureLogitsWarper(t)(UNUSED_IDS, logits)
    torch.testing.assert_close(apply_temperature(logits, t), expected, rtol=0, atol=0)


@pytest.mark.parametrize("k", [1, 3, 10, V, V + 5])
def test_top_k_matches_transformers(k):
    logits = random_logits(k)
    expected = hf.TopKLogitsWarper(top_k=k)(UNUSED_IDS, logits)
    torch.testing.assert_close(top_k_filter(logits, k), expected, rtol=0, atol=0)


def test_top_k_keeps_ties_with_the_kth_logit():
    logits = torch.tensor([[1.0, 3.0, 2.0, 2.0, 0.0]])
    assert torch.isinf(top_k_filter(logits, 2)).tolist() == [[True, False, False, False, True]]


@pytest.mark.parametrize("p", [0.05, 0.3, 0.7, 0.95, 1.0])
def test_top_p_matches_transformers(p):
    for seed in range(5):
        logits = random_logits(seed)
        expected = hf.TopPLogitsWarper(top_p=p)(UNUSED_IDS, logits)
        torch.testing.assert_close(top_p_filter(logits, p), expected, rtol=0, atol=0)


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    kept = ~torch.isinf(top_p_filter(logits, 0.75))
    assert kept.tolist() == [[True, True, False, False]]


@pytest.mark.parametrize("p", [0.0, 0.05, 0.2, 0.6, 1.0])
def test_min_p_matches_transformers(p):
    for seed in range(5):
        logits = random_logits(seed)
        expected = hf.MinPLogitsWarper(min_p=p)(UNUSED_IDS, logits)
        torch.testing.assert_close(min_p_filter(logits, p), expected, rtol=0, atol=0)


@pytest.mark.parametrize("penalty", [0.5, 1.3, 2.0])
def test_repetition_penalty_matches_transformers(penalty):
    logits, ids = random_logits(1), random_ids(1, alphabet=20)
    expected = hf.RepetitionPenaltyLogitsProcessor(penalty=penalty)(ids, logits.clone())
    torch.testing.assert_close(repetition_penalty(logits, ids, penalty), expected, rtol=0, atol=0)


def test_repetition_penalty_ignores_padding_ids():
    logits, ids = random_logits(2), random_ids(2, alphabet=20)
    padded = torch.cat([torch.full((B, 5), V), ids], dim=1)  # ids >= V are padding
    torch.testing.assert_close(
        repetition_penalty(logits, padded, 1.5), repetition_penalty(logits, ids, 1.5)
    )


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_no_repeat_ngram_matches_transformers(n):
    for seed in range(5):
        logits, ids = random_logits(seed), random_ids(seed, T=25, alphabet=4)
        expected = hf.NoRepeatNGramLogitsProcessor(n)(ids, logits)
        torch.testing.assert_close(no_repeat_ngram(logits, ids, n), expected, rtol=0, atol=0)


def test_no_repeat_ngram_bans_the_token_that_repeats_an_ngram():
    ids = torch.tensor([[7, 8, 9, 7, 8]])  # (7, 8) was followed by 9: 9 must not follow again
    banned = torch.isinf(no_repeat_ngram(torch.zeros(1, 12), ids, 3))[0]
    assert banned.nonzero().flatten().tolist() == [9]


def test_no_repeat_ngram_ignores_left_padding():
    logits, ids = random_logits(3), random_ids(3, T=12, alphabet=4)
    padded = torch.cat([torch.full((B, 6), V), ids], dim=1)
    for n in (2, 3):
        torch.testing.assert_close(
            no_repeat_ngram(logits, padded, n), no_repeat_ngram(logits, ids, n)
        )


def test_processors_are_pure():
    logits, ids = random_logits(4), random_ids(4)
    before = logits.clone()
    for out in (
        apply_temperature(logits, 0.5),
        top_k_filter(logits, 5),
        top_p_filter(logits, 0.5),
        min_p_filter(logits, 0.1),
        repetition_penalty(logits, ids, 1.5),
        no_repeat_ngram(logits, ids, 2),
    ):
        assert out is not logits
    torch.testing.assert_close(logits, before, rtol=0, atol=0)


def test_sample_from_draws_from_the_distribution():
    probs = torch.tensor([[0.5, 0.3, 0.2, 0.0]]).expand(20000, 4)
    draws = sample_from(probs, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    torch.testing.assert_close(freq, probs[0], atol=0.015, rtol=0)
    assert freq[3] == 0  # a zero-probability token is never drawn


def test_sample_from_is_reproducible_with_a_seed():
    probs = torch.softmax(random_logits(5, with_inf=False), dim=-1)
    a = sample_from(probs, torch.Generator().manual_seed(3))
    b = sample_from(probs, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_next_token_greedy_is_the_argmax_and_temperature_zero_is_greedy():
    logits, ids = random_logits(6), random_ids(6)
    greedy = next_token(logits, ids, GenerationConfig(strategy="greedy"))
    assert torch.equal(greedy, logits.argmax(-1))
    cold = next_token(
        logits, ids, GenerationConfig(strategy="sample", temperature=0.0), torch.Generator()
    )
    assert torch.equal(cold, greedy)
