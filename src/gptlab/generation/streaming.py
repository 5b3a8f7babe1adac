"""Streaming: a Python iterator of text pieces as the tokens come, and whole texts.

Both sit on the decode loop (`decode_tokens`) and the `TextAssembler`, which holds back partial
UTF-8 characters and possible starts of stop strings.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

from gptlab.generation.config import GenerationConfig
from gptlab.generation.decoder import Decoder
from gptlab.generation.loop import batch_prompts, decode_tokens, eval_mode, generate, stepwise
from gptlab.generation.speculative import check_speculative, speculative_tokens
from gptlab.generation.text import TextAssembler


def with_tokenizer_eos(config: GenerationConfig, tokenizer) -> GenerationConfig:
    """The config, with the tokenizer's end-of-text id as `eos_id` when the config has none."""
    if config.eos_id is None and getattr(tokenizer, "eos_id", None) is not None:
        return dataclasses.replace(config, eos_id=tokenizer.eos_id)
    return config


def generate_text(
    model,
    tokenizer,
    prompts: list[str],
    config: GenerationConfig,
    *,
    decoder: Decoder | None = None,
) -> list[str]:
    """The continuation of each prompt, as text cut just before the first stop string."""
    config = with_tokenizer_eos(config, tokenizer)
    rows = generate(
        model, [tokenizer.encode(p) for p in prompts], config, tokenizer=tokenizer, decoder=decoder
    )
    texts = []
    for row in rows:
        assembler = TextAssembler(tokenizer, config.stop)
        texts.append(assembler.push(row) + assembler.finish())
    return texts


def stream(
    model,
    tokenizer,
    prompt: str,
    config: GenerationConfig,
    *,
    decoder: Decoder | None = None,
    draft: Decoder | None = None,
    draft_tokens: int = 4,
    stats=None,
) -> Iterator[str]:
    """Yield the continuation of `prompt` in text pieces as the tokens come.

    The pieces add up to the decoded new tokens, cut before the first stop string; EOS (the
    tokenizer's, unless `config.eos_id` says otherwise) ends the text. Beam search cannot know
    its text before it ends, so with strategy "beam" the whole text comes as one piece.
    draft: a small model's `Decoder` for speculative decoding (see `generate`); `stats`, a
    `DraftStats` it fills.
    """
    for _, piece in stream_tokens(
        model,
        tokenizer,
        prompt,
        config,
        decoder=decoder,
        draft=draft,
        draft_tokens=draft_tokens,
        stats=stats,
    ):
        if piece:
            yield piece


def stream_tokens(
    model,
    tokenizer,
    prompt: str,
    config: GenerationConfig,
    *,
    decoder: Decoder | None = None,
    draft: Decoder | None = None,
    draft_tokens: int = 4,
    stats=None,
) -> Iterator[tuple[list[int], str]]:
    """`stream`, with the token ids: yields (ids, text), the new tokens since the last yield and
    the text they let out (empty while a character or a possible stop string is incomplete; the
    last yield may be text alone). The ids add up to exactly the tokens the model chose, up to
    the one that completes a stop string, so they need no re-tokenizing of the text."""
    config = with_tokenizer_eos(config, tokenizer)
    if config.uses_beams:
        ids = generate(
            model, [tokenizer.encode(prompt)], config, tokenizer=tokenizer, decoder=decoder
        )[0]
        assembler = TextAssembler(tokenizer, config.stop)
        yield ids, assembler.push(ids) + assembler.finish()
        return
    decoder = decoder or Decoder(model)
    if draft is not None:
        check_speculative(config, model, draft.model, 1)
    assembler = TextAssembler(tokenizer, config.stop)
    with eval_mode(model), eval_mode(draft.model) if draft else contextlib.nullcontext():
        ids, mask = batch_prompts(decoder, [tokenizer.encode(prompt)], config)
        loop = (
            decode_tokens(decoder, ids, mask, config)
            if draft is None
            else speculative_tokens(decoder, draft, ids, config, draft_tokens, stats)
        )
        for token in stepwise(loop):
            token = int(token[0])
            if token == config.stop_id:
                break
            yield [token], assembler.push([token])
            if assembler.stopped:
                break
    rest = assembler.finish()
    if rest:
        yield [], rest
