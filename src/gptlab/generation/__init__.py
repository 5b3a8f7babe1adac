"""Text generation: logits processors, one KV-cached decode loop, beam search, streaming.

    config = GenerationConfig(max_new_tokens=100, temperature=0.8, top_k=40, seed=1)
    new_ids = generate(model, [prompt_ids, other_prompt_ids], config)   # batched, left-padded
    for piece in stream(model, tokenizer, "Once upon a time", config):  # text as it comes
        print(piece, end="", flush=True)

For speed on a GPU, reuse one `Decoder(model, compile=True)`: it owns a static KV cache and a
decode step compiled with CUDA graphs. Files, in reading order: `config.py` (settings),
`processors.py` (pure logits functions), `decoder.py` (cache, prefill, decode step),
`loop.py` (the greedy/sampling loop and `generate`), `beam.py`, `text.py` (UTF-8 and stop
strings), `streaming.py` (`stream`, `generate_text`).
"""

from gptlab.generation.beam import beam_search
from gptlab.generation.config import GenerationConfig
from gptlab.generation.decoder import Decoder, decode_step, left_pad
from gptlab.generation.loop import decode_tokens, generate
from gptlab.generation.processors import (
    apply_penalties,
    apply_temperature,
    apply_warpers,
    min_p_filter,
    next_token,
    no_repeat_ngram,
    repetition_penalty,
    sample_from,
    top_k_filter,
    top_p_filter,
)
from gptlab.generation.streaming import generate_text, stream
from gptlab.generation.text import TextAssembler

__all__ = [
    "Decoder",
    "GenerationConfig",
    "TextAssembler",
    "apply_penalties",
    "apply_temperature",
    "apply_warpers",
    "beam_search",
    "decode_step",
    "decode_tokens",
    "generate",
    "generate_text",
    "left_pad",
    "min_p_filter",
    "next_token",
    "no_repeat_ngram",
    "repetition_penalty",
    "sample_from",
    "stream",
    "top_k_filter",
    "top_p_filter",
]
