"""Streaming: a Python iterator of text pieces as the tokens come, and whole texts.

Both sit on the decode loop (`decode_tokens`) and the `TextAssembler`, which holds back partial
UTF-8 characters and possible starts of stop strings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from gptlab.generation.config import GenerationConfig
from gptlab.generation.decoder import Decoder
from gptlab.generation.loop import batch_prompts, decode_tokens, eval_mode, generate, stepwise
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
    model, tokenizer, prompt: str, config: GenerationConfig, *, decoder: Decoder | None = None
) -> Iterator[str]:
    """Yield the continuation of `prompt` in text pieces as the tokens come.

    The pieces add up to the decoded new tokens, cut before the first stop string; EOS (the
    tokenizer's, unless `config.eos_id` says otherwise) ends the text. Beam search cannot know
    its text before it ends, so with strategy "beam" the whole text comes as one piece.
    """
    config = with_tokenizer_eos(config, tokenizer)
    if config.uses_beams:
        yield generate_text(model, tokenizer, [prompt], config, decoder=decoder)[0]
        return
    decoder = decoder or Decoder(model)
    assembler = TextAssembler(tokenizer, config.stop)
    with eval_mode(model):
        ids, mask = batch_prompts(decoder, [tokenizer.encode(prompt)], config)
        for token in stepwise(decode_tokens(decoder, ids, mask, config)):
            token = int(token[0])
            if token == config.stop_id:
                break
            piece = assembler.push([token])
            if piece:
                yield piece
            if assembler.stopped:
                break
    rest = assembler.finish()
    if rest:
        yield rest
