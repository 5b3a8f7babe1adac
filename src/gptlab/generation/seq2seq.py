"""Decoding an encoder-decoder: greedy and beam search on the GPT's decode loop and beam search.

    new_ids = translate_ids(model, [source_ids, other_source_ids], num_beams=5)

The work is split the way the model is. The encoder runs once per source; each decoder block's
cross-attention keys and values of its output are computed once per source too, since they do
not change while the target grows; then the decoder runs one token at a time with a KV cache of
its self-attention, exactly as a GPT does. `Seq2SeqDecoder` wraps those three steps behind the
protocol of `gptlab.generation.decoder.Decoder` (prefill, step, reorder), so the GPT's greedy
loop (`decode_tokens`, `collect_tokens`) and `beam_search` drive it unchanged: there is one beam search.

How long a target may grow is set by its source: at most `max_length_extra + max_length_ratio *
len(source)` tokens (the max_len_a / max_len_b of fairseq), after which EOS is forced. Each row
gets its own limit, so a short source in a batch of long ones stops as it would alone.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gptlab.errors import ConfigError, ContextLengthError
from gptlab.generation.beam import beam_search
from gptlab.generation.config import GenerationConfig
from gptlab.generation.loop import collect_tokens, cut_at_eos, decode_tokens, eval_mode
from gptlab.nn.attention import padding_mask_from_lengths

FORCED_OUT = -1.0e9  # the logit of every token but EOS once a row has reached its length limit


class Seq2SeqDecoder:
    """An encoder-decoder with its encoded sources, their cross-attention keys and values, and a
    static self-attention KV cache: the `Decoder` protocol for the GPT's decoding loops.

    src (B, S) right-padded source ids, src_mask (B, S) True on real tokens, limits (B,) the
    most new tokens (EOS not counted) each row may produce. `prefill` may start R = B * k rows
    (k beams of each source, beam j of source b at row b * k + j), as `beam_search` does.
    """

    def __init__(self, model, src: Tensor, src_mask: Tensor, limits: Tensor):
        self.model = model
        self.context_length = model.config.max_length
        self.src_mask = src_mask
        self.limits = limits
        memory = model.encode(src, src_mask)  # (B, S, C): the encoder's one run
        self.memory_kv = model.memory_kv(memory)  # per block: (B, nh, S, hs) keys and values
        self.kv_cache = None
        self.length = 0  # slots written so far: the next token goes into slot `length`

    @property
    def device(self) -> torch.device:
        return self.src_mask.device

    @property
    def max_length(self) -> int:
        return self.kv_cache[0].max_length

    @property
    def full(self) -> bool:
        return self.length >= self.max_length

    def prefill(self, ids: Tensor, padding_mask: Tensor | None, max_length: int) -> Tensor:
        """Start R rows of targets `ids` (R, T) (BOS, or BOS and a forced prefix) with a cache of
        `max_length` slots; the logits of each row's next token (R, V), float32."""
        if padding_mask is not None:
            raise ConfigError("encoder-decoder targets start with the same prefix on every row")
        R, T = ids.shape
        copies = R // self.src_mask.size(0)
        # The beams of a source share its keys and values: the copies are made once, here, and
        # beam search only ever reorders rows among the beams of one source.
        self.rows_memory_kv = [
            (k.repeat_interleave(copies, dim=0), v.repeat_interleave(copies, dim=0))
            for k, v in self.memory_kv
        ]
        self.rows_src_mask = self.src_mask.repeat_interleave(copies, dim=0)  # (R, S)
        self.rows_limits = self.limits.repeat_interleave(copies)  # (R,)
        self.kv_cache = self.model.new_kv_cache(R, max_length, device=self.device)
        self.prompt_length, self.length = T, 0
        return self._decode(ids)

    def step(self, token: Tensor) -> Tensor:
        """Feed one token per row (R,) into the next slot; return the following logits (R, V)."""
        return self._decode(token[:, None])

    def reorder(self, index: Tensor) -> None:
        """Make row i of the cache a copy of row index[i] (beam search keeps the best beams)."""
        for layer in self.kv_cache:
            for buffer in (layer.k, layer.v):
                buffer[:, :, : self.length].copy_(buffer[index, :, : self.length])
        self.rows_limits = self.rows_limits[index]

    def slide(self, history: Tensor, pad_id: int) -> Tensor:
        raise ContextLengthError(
            f"the target outgrew the decoder's {self.context_length} positions: lower the "
            "length limit"
        )

    def _decode(self, tokens: Tensor) -> Tensor:
        T = tokens.size(1)
        input_pos = torch.arange(self.length, self.length + T, device=self.device)
        logits = self.model.decode(
            tokens,
            None,
            self.rows_src_mask,
            kv_cache=self.kv_cache,
            input_pos=input_pos,
            memory_kv=self.rows_memory_kv,
        )[:, -1].float()  # (R, V)
        self.length += T
        return self._force_eos_past_limits(logits)

    def _force_eos_past_limits(self, logits: Tensor) -> Tensor:
        produced = self.length - self.prompt_length  # new tokens so far in every row
        at_limit = self.rows_limits <= produced  # (R,)
        if bool(at_limit.any()):
            eos = self.model.config.eos_id
            forced = torch.full_like(logits, FORCED_OUT)
            forced[:, eos] = 0.0
            logits = torch.where(at_limit[:, None], forced, logits)
        return logits


def length_limits(
    source_lengths: list[int], ratio: float, extra: int, max_length: int
) -> list[int]:
    """The most new tokens of each target: extra + ratio * source length, within the decoder's
    positions (BOS and the final EOS take one each)."""
    if ratio < 0 or extra < 0:
        raise ConfigError("the length limit's ratio and extra tokens must not be negative")
    return [max(1, min(int(extra + ratio * n), max_length - 2)) for n in source_lengths]


def translate_ids(
    model,
    sources: list[list[int]],
    *,
    num_beams: int = 1,
    length_penalty: float = 1.0,
    max_length_ratio: float = 1.5,
    max_length_extra: int = 10,
    batch_size: int = 64,
    device=None,
) -> list[list[int]]:
    """The target ids of each source (EOS cut off), by greedy decoding or beam search.

    sources: source id lists (with the source EOS if the model was trained with one). Sources
    are decoded in batches of similar length, each batch's encoder run once.
    num_beams 1 is greedy; length_penalty divides a finished beam's log-probability by
    length ** length_penalty (above 0 favours longer outputs). max_length_ratio and
    max_length_extra bound each target to extra + ratio * len(source) tokens.
    """
    if not sources:
        return []
    config = model.config
    for source in sources:
        if not source:
            raise ConfigError("an empty source: give at least one token")
        if len(source) > config.max_length:
            raise ContextLengthError(
                f"a source of {len(source)} tokens is longer than the model's maximum of "
                f"{config.max_length}"
            )
    device = device or model.lm_head.weight.device
    limits = length_limits(
        [len(s) for s in sources], max_length_ratio, max_length_extra, config.max_length
    )
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))  # less padding a batch
    results: list[list[int]] = [[] for _ in sources]
    with eval_mode(model), torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = [sources[i] for i in rows]
            batch_limits = [limits[i] for i in rows]
            decoded = _decode_batch(model, batch, batch_limits, num_beams, length_penalty, device)
            for i, tokens in zip(rows, decoded):
                results[i] = tokens
    return results


def _decode_batch(model, sources, limits, num_beams, length_penalty, device) -> list[list[int]]:
    config = model.config
    src, src_mask = right_pad(sources, config.pad_id, device)
    decoder = Seq2SeqDecoder(model, src, src_mask, torch.tensor(limits, device=device))
    generation = GenerationConfig(
        max_new_tokens=max(limits) + 1,  # the final EOS
        strategy="beam" if num_beams > 1 else "greedy",
        num_beams=num_beams,
        length_penalty=length_penalty,
        eos_id=config.eos_id,
    )
    bos = torch.full((len(sources), 1), config.bos_id, dtype=torch.long, device=device)
    if generation.uses_beams:
        rows = beam_search(decoder, bos, None, generation)
    else:
        loop = decode_tokens(decoder, bos, None, generation)
        rows = collect_tokens(loop, bos.size(0), decoder.device, generation, None)
    return [cut_at_eos(row, config.eos_id) for row in rows]


def right_pad(rows: list[list[int]], pad_id: int, device=None) -> tuple[Tensor, Tensor]:
    """Stack token rows of different lengths, padded on the right: ids (B, S), mask (B, S)
    True on tokens. (Sources are right-padded: the encoder sees all of a source at once.)"""
    S = max(len(row) for row in rows)
    # Built on the host and moved once: one copy to a GPU, not one a row.
    ids = torch.tensor([list(row) + [pad_id] * (S - len(row)) for row in rows], dtype=torch.long)
    lengths = torch.tensor([len(row) for row in rows])
    ids, lengths = ids.to(device), lengths.to(device)
    return ids, padding_mask_from_lengths(lengths, S)
