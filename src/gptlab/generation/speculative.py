"""Speculative decoding: a small draft model guesses, the big model checks several guesses at once.

Decoding one token reads every weight of the model; on a GPU at batch 1 that reading, not the
arithmetic, sets the pace, so feeding the model k + 1 tokens costs little more than feeding it
one. A draft model that is much cheaper proposes k tokens greedily, one at a time; the target
model then reads the last accepted token and the k proposals in one call, which gives its own
choice after each of them. Proposals are kept for as long as they equal the target's choices,
and the target's choice at the first mismatch comes for free: every round yields between 1 and
k + 1 tokens for one target call (Leviathan et al. 2023; Chen et al. 2023).

With greedy decoding the output is exactly the target's own greedy output, whatever the draft:
a proposal is only ever kept where the target would have picked it. (Up to floating point: the
target scores k + 1 tokens in one call here and one at a time without a draft, and in bfloat16
two nearly tied tokens can swap.) A good draft saves time, a poor one costs a little.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from gptlab.errors import ConfigError
from gptlab.generation.config import GenerationConfig
from gptlab.generation.decoder import Decoder, plan_lengths, warn_if_context_full


@dataclass
class DraftStats:
    """How a draft did: target calls after the prompt, guesses proposed and kept, tokens made."""

    rounds: int = 0
    proposed: int = 0
    accepted: int = 0
    tokens: int = 0

    def describe(self) -> str:
        if not self.rounds:
            return "draft: no rounds"
        return (
            f"draft: {self.accepted}/{self.proposed} guesses kept "
            f"({self.accepted / max(self.proposed, 1):.0%}), {self.tokens / self.rounds:.2f} "
            "tokens per call of the model"
        )


def check_speculative(config: GenerationConfig, target, draft, batch_size: int) -> None:
    """Refuse what speculative decoding does not do, before any work."""
    if config.samples or config.uses_beams:
        raise ConfigError(
            "a draft model speeds up greedy decoding only: use strategy greedy (or temperature 0)"
        )
    if config.repetition_penalty != 1.0 or config.no_repeat_ngram_size:
        raise ConfigError("a draft model cannot be used with repetition penalties")
    if config.overflow == "slide":
        raise ConfigError("a draft model cannot be used with overflow='slide'")
    if batch_size != 1:
        raise ConfigError(f"a draft model decodes one prompt at a time, got {batch_size}")
    if draft.config.vocab_size != target.config.vocab_size:
        raise ConfigError(
            f"the draft model's vocabulary ({draft.config.vocab_size}) is not the target's "
            f"({target.config.vocab_size}): both must use the same tokenizer"
        )


def speculative_tokens(
    target: Decoder,
    draft: Decoder,
    ids: Tensor,
    config: GenerationConfig,
    draft_tokens: int = 4,
    stats: DraftStats | None = None,
) -> Iterator[Tensor]:
    """Yield the target's greedy tokens (1,) one at a time, found `draft_tokens` at a time.

    ids (1, P): the prompt. Stops after `max_new_tokens`, or where the context is full.
    `stats`, when given, counts the rounds and the guesses kept.
    """
    stats = DraftStats() if stats is None else stats
    if draft_tokens < 1:
        raise ConfigError(f"draft_tokens must be at least 1, got {draft_tokens}")
    P = ids.size(1)
    cache_length, new_tokens = plan_lengths(P, config, target.context_length)
    if cache_length > draft.context_length:
        raise ConfigError(
            f"the draft model's context ({draft.context_length}) is shorter than the "
            f"{cache_length} positions this generation needs"
        )
    token = target.prefill(ids, None, cache_length).argmax(-1)  # (1,)
    draft.prefill(ids, None, cache_length)
    yield token
    produced = 1
    if produced == new_tokens:
        warn_if_context_full(new_tokens, config, target.context_length)
    while produced < new_tokens:
        start = target.length  # the slot `token` goes into, in both caches
        # At least 1: plan_lengths leaves room for every token still to come.
        k = min(draft_tokens, new_tokens - produced, target.max_length - start - 1)
        proposal = []  # the draft's greedy guesses after `token`
        guess = token
        for _ in range(k):
            guess = draft.step(guess).argmax(-1)
            proposal.append(guess)
        fed = torch.stack([token, *proposal], dim=1)  # (1, k + 1)
        choices = target.extend(fed).argmax(-1)[0]  # (k + 1,): the target's pick after each
        # One host sync a round: how many guesses the target agrees with, in a row.
        agree = (fed[0, 1:] == choices[:k]).tolist() + [False]
        kept = agree.index(False)
        stats.rounds += 1
        stats.proposed += k
        stats.accepted += kept
        stats.tokens += min(kept + 1, new_tokens - produced)
        for new in choices[: kept + 1]:  # the kept guesses, then the target's own next token
            yield new[None]
            produced += 1
            if produced == new_tokens:
                warn_if_context_full(new_tokens, config, target.context_length)
                return
        target.rewind(start + 1 + kept)
        if kept == k:
            draft.step(proposal[-1])  # the draft never fed its last guess to itself
        else:
            draft.rewind(start + 1 + kept)
        token = choices[kept][None]
