"""The decode loop of greedy decoding and sampling, and `generate`, its batch front end.

`decode_tokens` is the one loop: prefill the prompts, then pick a token per row, feed it back,
and repeat, sliding the window or stopping when the context is full. It yields each step's
tokens as a tensor and leaves deciding when a row is done to its caller, so `generate`
(batches, few host syncs) and `stream` (one row, text as it comes) share it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor

from gptlab.errors import ConfigError
from gptlab.generation.beam import beam_search
from gptlab.generation.config import GenerationConfig
from gptlab.generation.decoder import (
    Decoder,
    left_pad,
    plan_lengths,
    prepare_prompts,
    warn_if_context_full,
)
from gptlab.generation.processors import next_token
from gptlab.generation.speculative import check_speculative, speculative_tokens
from gptlab.generation.text import TextAssembler

# On a GPU, asking "is every row done?" makes the host wait for the device; asking every
# SYNC_EVERY steps keeps the GPU busy, at the cost of at most SYNC_EVERY - 1 wasted steps.
SYNC_EVERY = 16


@contextlib.contextmanager
def eval_mode(model):
    """The model in evaluation mode (no dropout) for the duration; its mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def stepwise(loop: Iterator[Tensor]) -> Iterator[Tensor]:
    """Run each step of `loop` in inference mode, and give control back with torch's modes as
    they were: a generator that yields text must not change them while its caller runs."""
    try:
        while True:
            with torch.inference_mode():
                item = next(loop, None)
            if item is None:
                return
            yield item
    finally:
        loop.close()


def new_generator(config: GenerationConfig, device) -> torch.Generator | None:
    """A random generator seeded from `config.seed` (None: draw from torch's global generator)."""
    if config.seed is None or not config.samples:
        return None
    return torch.Generator(device=device).manual_seed(config.seed)


def batch_prompts(decoder: Decoder, prompts: list[list[int]], config: GenerationConfig):
    """Left-padded prompts on the decoder's device: ids (B, P), mask (B, P) or None."""
    model = decoder.model
    prompts = prepare_prompts(prompts, config, model.config.vocab_size, decoder.context_length)
    ids, mask = left_pad(prompts, 0, device=decoder.device)
    return ids, (None if all(len(p) == ids.size(1) for p in prompts) else mask)


def decode_tokens(
    decoder: Decoder, ids: Tensor, mask: Tensor | None, config: GenerationConfig
) -> Iterator[Tensor]:
    """Yield the next token of every row (B,), step after step, up to `max_new_tokens`.

    ids (B, P) left-padded prompts, mask (B, P) True on their tokens (None: no padding).
    Stops early, with a warning, when the context is full and `config.overflow` is "stop".
    """
    B, P = ids.shape
    V = decoder.model.config.vocab_size
    cache_length, new_tokens = plan_lengths(P, config, decoder.context_length)
    generator = new_generator(config, decoder.device)
    # The text so far, for the penalties and the sliding window; V marks "no token".
    history = torch.full((B, P + config.max_new_tokens), V, dtype=torch.long, device=decoder.device)
    history[:, :P] = ids if mask is None else ids.masked_fill(~mask, V)
    logits = decoder.prefill(ids, mask, cache_length)
    for i in range(new_tokens):
        token = next_token(logits, history[:, : P + i], config, generator)  # (B,)
        history[:, P + i] = token
        yield token
        if i + 1 < new_tokens:
            # Only overflow="slide" fills the cache: plan_lengths keeps "stop" within it.
            if decoder.full:
                logits = decoder.slide(history[:, : P + i + 1], V)
            else:
                logits = decoder.step(token)
    warn_if_context_full(new_tokens, config, decoder.context_length)


def cut_at_eos(tokens: list[int], eos_id: int | None) -> list[int]:
    """The tokens before the first `eos_id` (all of them when there is none)."""
    return tokens[: tokens.index(eos_id)] if eos_id is not None and eos_id in tokens else tokens


def generate(
    model,
    prompts: list[list[int]],
    config: GenerationConfig,
    *,
    device=None,
    tokenizer=None,
    decoder: Decoder | None = None,
    draft: Decoder | None = None,
    draft_tokens: int = 4,
) -> list[list[int]]:
    """The new token ids of each prompt (the EOS that ends one is not included).

    prompts: token id lists of any lengths, decoded together as one left-padded batch. An empty
    prompt starts from `config.eos_id` (GPT-2's <|endoftext|>); without one it is an error.
    device: where to run (default: where the model is; the model is moved there).
    tokenizer: needed for stop strings; ids are cut after the token that completes one.
    decoder: a `Decoder` to reuse, with its cache and compiled step (`Decoder(model, compile=True)`
    for speed on a GPU).
    draft: the `Decoder` of a small model with the same tokenizer, for speculative decoding
    (greedy, one prompt): it proposes `draft_tokens` tokens that the model checks in one call.
    """
    if not prompts:
        return []
    if config.stop and tokenizer is None:
        raise ConfigError("stop strings need a tokenizer: pass tokenizer= to generate")
    if device is not None:
        model.to(device)
    decoder = decoder or Decoder(model)
    draft_mode = eval_mode(draft.model) if draft is not None else contextlib.nullcontext()
    with eval_mode(model), draft_mode, torch.inference_mode():
        if draft is not None:
            check_speculative(config, model, draft.model, len(prompts))
        ids, mask = batch_prompts(decoder, prompts, config)
        if config.uses_beams:
            rows = beam_search(decoder, ids, mask, config)
        else:
            loop = (
                decode_tokens(decoder, ids, mask, config)
                if draft is None
                else speculative_tokens(decoder, draft, ids, config, draft_tokens)
            )
            rows = collect_tokens(loop, ids.size(0), decoder.device, config, tokenizer)
    rows = [cut_at_eos(row, config.stop_id) for row in rows]
    if config.stop:
        # Beam search only knows its winners at the end: cut them the same way after the fact.
        rows = [TextAssembler(tokenizer, config.stop).cut(row) for row in rows]
    return rows


def collect_tokens(
    loop: Iterator[Tensor], B: int, device, config: GenerationConfig, tokenizer
) -> list[list[int]]:
    """Run a decode loop over B rows until every row is done; the tokens of each row."""
    eos_id = config.stop_id
    sync_every = 1 if device.type == "cpu" else SYNC_EVERY
    assemblers = [TextAssembler(tokenizer, config.stop) for _ in range(B)] if config.stop else None
    done = torch.zeros(B, dtype=torch.bool, device=device)
    steps: list[Tensor] = []
    for token in loop:
        steps.append(token)
        if eos_id is None and assemblers is None:
            continue  # nothing ends a row early: no need to look at the tokens before the end
        if eos_id is not None:
            done |= token == eos_id
        if len(steps) % sync_every == 0:
            if assemblers is not None:
                new = torch.stack(steps[-sync_every:], dim=1).tolist()  # (B, sync_every)
                for row, assembler in enumerate(assemblers):
                    assembler.push(new[row])
                    if assembler.stopped:
                        done[row] = True
            if bool(done.all()):
                loop.close()
                break
    return torch.stack(steps, dim=1).tolist()  # (B, N)
