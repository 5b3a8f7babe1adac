"""What the model would say next, how each filter reshapes that, and how likely each token was.

The next-token explorer runs the model once on a text and follows the last position's logits
through the same processors sampling uses (`gptlab.generation`), in the same order: penalties,
temperature, top-k, top-p, min-p. At each filter it notes which tokens go, so the page can
show what each one removes; the distribution left at the end is the one sampling draws from.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gptlab.errors import ConfigError, TokenizerError
from gptlab.generation import (
    GenerationConfig,
    apply_penalties,
    apply_temperature,
    min_p_filter,
    top_k_filter,
    top_p_filter,
)

# How the page shows characters that would otherwise be invisible inside a token.
VISIBLE_WHITESPACE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"}


@dataclass(frozen=True)
class TokenChoice:
    """One candidate for the next token."""

    token_id: int
    text: str
    model_probability: float  # the model's own distribution (temperature 1, no filters)
    tempered_probability: float  # after penalties and temperature, before any filter
    probability: float  # what sampling draws from: after the filters, renormalised (0 if removed)
    removed_by: str | None  # what removed it ("top-k", "top-p", "min-p", "temperature 0"), or None


@dataclass(frozen=True)
class NextTokenTable:
    """The most likely next tokens of a text, and what the filters left of the vocabulary."""

    choices: list[TokenChoice]  # most likely first
    kept: int  # how many tokens of the whole vocabulary sampling may still draw
    vocab_size: int
    context_tokens: int  # how many tokens of the text the model read (its context may cut it)
    greedy: bool  # temperature 0: the most likely token is certain


def text_ids(tokenizer, text: str) -> list[int]:
    """The token ids of `text`; an empty text starts at the end-of-text token when there is one."""
    ids = tokenizer.encode(text)
    if ids:
        return ids
    if tokenizer.eos_id is None:
        raise ConfigError("the text is empty: type a few characters to see what comes next")
    return [tokenizer.eos_id]


def next_token_logits(model, ids: list[int]) -> Tensor:
    """The model's float logits (V,) for the token after `ids`, reading at most its context."""
    ids = ids[-model.config.context_length :]
    device = model.lm_head.weight.device
    with torch.inference_mode():
        logits, _ = model(torch.tensor([ids], device=device))  # (1, 1, V)
    return logits[0, -1].float().cpu()


def next_token_table(
    model, tokenizer, text: str, config: GenerationConfig, rows: int = 12
) -> NextTokenTable:
    """The `rows` most likely next tokens of `text`, followed through `config`'s processors."""
    ids = text_ids(tokenizer, text)
    context = ids[-model.config.context_length :]
    logits = next_token_logits(model, context)[None, :]  # (1, V)
    model_probs = logits.softmax(dim=-1)[0]
    logits = apply_penalties(logits, torch.tensor([context]), config)
    greedy = config.temperature == 0
    if greedy:
        # Temperature 0 is greedy decoding: all the probability goes to the most likely token.
        tempered = logits
        others = torch.ones(logits.size(-1), dtype=torch.bool)
        others[logits[0].argmax()] = False
        final = logits.masked_fill(others, float("-inf"))
        removed_by = {"temperature 0": others}
    else:
        tempered = apply_temperature(logits, config.temperature)
        final, removed_by = _filter_stages(tempered, config)
    tempered_probs = tempered.softmax(dim=-1)[0]
    probs = final.softmax(dim=-1)[0]
    order = torch.argsort(tempered[0], descending=True, stable=True)[:rows]
    choices = [
        TokenChoice(
            token_id=int(i),
            text=token_text(tokenizer, int(i)),
            model_probability=float(model_probs[i]),
            tempered_probability=float(tempered_probs[i]),
            probability=float(probs[i]),
            removed_by=next((name for name, mask in removed_by.items() if mask[i]), None),
        )
        for i in order
    ]
    return NextTokenTable(
        choices=choices,
        kept=int((probs > 0).sum()),
        vocab_size=logits.size(-1),
        context_tokens=len(context),
        greedy=greedy,
    )


def _filter_stages(logits: Tensor, config: GenerationConfig) -> tuple[Tensor, dict[str, Tensor]]:
    """Apply the filters in sampling's order (see `apply_warpers`); for each, the tokens it
    removed (V,) as a boolean mask."""
    stages = [
        ("top-k", config.top_k, top_k_filter),
        ("top-p", None if config.top_p == 1.0 else config.top_p, top_p_filter),
        ("min-p", config.min_p, min_p_filter),
    ]
    removed = {}
    for name, value, apply in stages:
        if value is None:
            continue
        filtered = apply(logits, value)
        removed[name] = (filtered[0] == float("-inf")) & (logits[0] != float("-inf"))
        logits = filtered
    return logits, removed


def token_text(tokenizer, token_id: int) -> str:
    """The text of one token; an id past the tokenizer's vocabulary (a model whose embedding
    table was padded, as nanoGPT pads 50257 to 50304) names no text."""
    try:
        return tokenizer.decode([token_id])
    except TokenizerError:
        return f"<id {token_id}>"


def token_probabilities(model, ids: list[int], start: int) -> list[float]:
    """The probability the model gave each of `ids[start:]`, knowing the tokens before it.

    A text longer than the model's context is read in overlapping windows, so every token is
    scored knowing at least half a context of what came before.
    """
    if not 1 <= start <= len(ids):
        raise ValueError(f"start must be in [1, {len(ids)}], got {start}")
    context_length = model.config.context_length
    device = model.lm_head.weight.device
    probabilities: list[float] = []
    first = start  # the first token this window scores
    while first < len(ids):
        last = (
            len(ids) if len(ids) <= context_length else min(len(ids), first + context_length // 2)
        )
        window_start = max(0, last - context_length)
        window = torch.tensor([ids[window_start:last]], device=device)  # (1, T)
        with torch.inference_mode():
            logits, _ = model(window, all_logits=True)  # (1, T, V)
        # The logits at position j predict token j + 1.
        log_probs = logits[0, first - 1 - window_start : last - 1 - window_start].float()
        targets = window[0, first - window_start :]  # (n,)
        picked = log_probs.log_softmax(dim=-1).gather(-1, targets[:, None])[:, 0]
        probabilities.extend(picked.exp().tolist())
        first = last
    return probabilities


def visible_token(text: str) -> str:
    """A token's text with its whitespace and control characters made visible."""
    if not text:
        return "∅"
    return "".join(
        VISIBLE_WHITESPACE.get(c, c if c.isprintable() else f"\\x{ord(c):02x}") for c in text
    )


def continuation_probabilities(
    model, tokenizer, prompt: str, continuation: str, ids: list[int] | None = None
) -> list[tuple[str, float]]:
    """Each token of `continuation` with the probability the model gave it after `prompt`.

    `ids`: the tokens the model wrote, taken as they are when they spell `continuation`. Without
    them (or for edited text) the continuation is read as the tokenizer splits it, which is
    almost always, but not always, how the model wrote it.
    """
    prompt_ids = text_ids(tokenizer, prompt)
    exact = bool(ids) and tokenizer.decode(list(ids)) == continuation
    new_ids = list(ids) if exact else tokenizer.encode(continuation)
    if not new_ids:
        return []
    probabilities = token_probabilities(model, prompt_ids + new_ids, len(prompt_ids))
    return [(token_text(tokenizer, i), p) for i, p in zip(new_ids, probabilities)]
