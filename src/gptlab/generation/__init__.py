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

from __future__ import annotations

from gptlab.lazy import lazy_names

# Public name -> the module of this package that defines it, imported on first access (PEP 562),
# so that `from gptlab.generation import GenerationConfig` (a dataclass) does not import torch.
_LAZY_NAMES = {
    "beam_hypotheses": ".beam",
    "beam_search": ".beam",
    "GenerationConfig": ".config",
    "Decoder": ".decoder",
    "decode_step": ".decoder",
    "left_pad": ".decoder",
    "decode_tokens": ".loop",
    "generate": ".loop",
    "apply_penalties": ".processors",
    "apply_temperature": ".processors",
    "apply_warpers": ".processors",
    "min_p_filter": ".processors",
    "next_token": ".processors",
    "no_repeat_ngram": ".processors",
    "repetition_penalty": ".processors",
    "sample_from": ".processors",
    "top_k_filter": ".processors",
    "top_p_filter": ".processors",
    "generate_text": ".streaming",
    "stream": ".streaming",
    "stream_tokens": ".streaming",
    "speculative_tokens": ".speculative",
    "TextAssembler": ".text",
}

__all__ = sorted(_LAZY_NAMES)


__getattr__, __dir__ = lazy_names(__name__, _LAZY_NAMES)
