"""Logits processors: small pure functions from logits (B, V) to logits (B, V).

Each one reshapes the next-token distribution in one way: penalties push down tokens the text
already has, warpers (temperature, top-k, top-p, min-p) sharpen or truncate the distribution
before a token is drawn. A filtered token gets -inf, so its probability is exactly 0.
Each function gives the same result as the transformers `LogitsProcessor` of the same
name (the tests hold them equal on random logits).

Token histories (B, T) may hold ids >= V: they stand for padding (left padding of a batch,
unwritten slots) and are never counted as text.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gptlab.generation.config import GenerationConfig


def apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    """Divide the logits by `temperature`: below 1 sharpens the distribution, above 1 flattens."""
    return logits / temperature


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the `k` highest logits of each row (ties with the k-th included), -inf elsewhere."""
    k = min(k, logits.size(-1))
    kth_best = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth_best, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus filtering (Holtzman et al. 2020): keep the most likely tokens whose probabilities
    add up to at least `p`; the most likely token is always kept."""
    ascending, order = torch.sort(logits, dim=-1)  # (B, V), least likely first
    # The probability of each token and all the less likely ones together.
    mass_up_to = ascending.softmax(dim=-1).cumsum(dim=-1)
    # A token goes when it and everything less likely together stay within the 1 - p we may drop.
    drop_sorted = mass_up_to <= 1 - p
    drop_sorted[..., -1] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def min_p_filter(logits: Tensor, p: float) -> Tensor:
    """Min-p filtering (Nguyen et al. 2024): drop tokens less likely than `p` times the most
    likely one, so the cut adapts to how confident the model is."""
    probs = logits.softmax(dim=-1)  # (B, V)
    threshold = p * probs.amax(dim=-1, keepdim=True)  # (B, 1)
    return logits.masked_fill(probs < threshold, float("-inf"))


def repetition_penalty(logits: Tensor, input_ids: Tensor, penalty: float) -> Tensor:
    """Make every token already in `input_ids` (B, T) less likely (Keskar et al. 2019, CTRL):
    its logit is divided by `penalty` when positive and multiplied by it when negative."""
    V = logits.size(-1)
    seen = torch.zeros(logits.size(0), V + 1, dtype=torch.bool, device=logits.device)
    seen.scatter_(1, input_ids.clamp(max=V), True)  # padding ids land in the spare last column
    seen = seen[:, :V]  # (B, V)
    penalized = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalized, logits)


def no_repeat_ngram(logits: Tensor, input_ids: Tensor, n: int) -> Tensor:
    """Forbid any token that would complete an n-gram `input_ids` (B, T) already contains.

    The next token completes the n-gram (last n-1 tokens, next token); every earlier window of
    n tokens that starts with those n-1 tokens bans its own last token.
    """
    B, T = input_ids.shape
    if n < 1 or n > T:
        return logits
    V = logits.size(-1)
    prefix = input_ids[:, T - n + 1 :]  # (B, n-1), the last n-1 tokens
    windows = input_ids.unfold(1, n, 1)  # (B, T-n+1, n), every n-gram so far
    matches = (windows[..., :-1] == prefix[:, None, :]).all(dim=-1)  # (B, T-n+1)
    # Windows that do not match point at the spare last column, which is then dropped.
    banned_ids = torch.where(matches, windows[..., -1].clamp(max=V), V)
    banned = torch.zeros(B, V + 1, dtype=torch.bool, device=logits.device)
    banned.scatter_(1, banned_ids, True)
    return logits.masked_fill(banned[:, :V], float("-inf"))


def apply_penalties(logits: Tensor, input_ids: Tensor, config: GenerationConfig) -> Tensor:
    """The processors of every strategy: repetition penalty, then the n-gram ban."""
    if config.repetition_penalty != 1.0:
        logits = repetition_penalty(logits, input_ids, config.repetition_penalty)
    if config.no_repeat_ngram_size > 0:
        logits = no_repeat_ngram(logits, input_ids, config.no_repeat_ngram_size)
    return logits


def apply_warpers(logits: Tensor, config: GenerationConfig) -> Tensor:
    """The processors of sampling, in transformers' order: temperature, top-k, top-p, min-p."""
    if config.temperature != 1.0:
        logits = apply_temperature(logits, config.temperature)
    if config.top_k is not None:
        logits = top_k_filter(logits, config.top_k)
    if config.top_p is not None and config.top_p < 1.0:
        logits = top_p_filter(logits, config.top_p)
    if config.min_p is not None:
        logits = min_p_filter(logits, config.min_p)
    return logits


def sample_from(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Draw one token per row of `probs` (B, V) -> (B,), without a device-to-host sync.

    The exponential race: with E_i ~ Exp(1) independent, argmax_i p_i / E_i is distributed as
    Categorical(p), the same law as `torch.multinomial`, but it is one elementwise op and an
    argmax, so it stays on the GPU (gpt-fast samples the same way). A seed fixes the draws on
    a given device; the CPU and a GPU draw different numbers from the same seed.
    """
    race = torch.empty_like(probs).exponential_(1.0, generator=generator)
    race.clamp_min_(torch.finfo(race.dtype).tiny)  # an exact 0 would turn a 0 probability into 0/0
    return torch.argmax(probs / race, dim=-1)


def next_token(
    logits: Tensor, input_ids: Tensor, config: GenerationConfig, generator=None
) -> Tensor:
    """Pick the next token of each row (B,) from float logits (B, V) and the text so far (B, T)."""
    logits = apply_penalties(logits, input_ids, config)
    if not config.samples:
        # Exact greedy: the first of equal maxima, as transformers takes it.
        return torch.argmax(logits, dim=-1)
    probs = apply_warpers(logits, config).softmax(dim=-1)
    return sample_from(probs, generator)
