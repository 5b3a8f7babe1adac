"""The decoding machinery every strategy shares: a static KV cache, prefill, and the decode step.

Generation runs in two phases (as in gpt-fast). *Prefill* pushes the whole prompt through the
model once and fills the KV cache. *Decode* then feeds one token per row per step: it reads
every weight once and the filled part of the cache (rounded up to a power of two, so that a
step near the start of a long context costs less than one near its end), and writes one new
cache slot. The cache is preallocated and
indexed by slot, so every decode step has the same shapes; that is what lets
`torch.compile(mode="reduce-overhead")` capture the step in a CUDA graph and replay it
without Python or kernel-launch overhead.

Batches of prompts of different lengths are left-padded: every row's last prompt token sits in
the same slot, so one slot index serves the whole batch. Each row's position ids start at 0 at
its first real token, and the padding slots are hidden from attention.
"""

from __future__ import annotations

import collections
import threading
import warnings

import torch
from torch import Tensor

from gptlab.errors import ConfigError, ContextLengthError

# With overflow="slide", a full window keeps its last three quarters and is prefilled again:
# dropping a quarter at a time re-runs the prefill every context/4 tokens rather than every token.
SLIDE_KEEP = 0.75

# The decode step reads the cache's first slots only, rounded up to a power of two from this
# size: a step at position 100 reads 128 slots, not the whole context. Each size compiles a
# step of its own, so there are few of them (64, 128, ..., the cache length).
MIN_VISIBLE = 64


def visible_slots(needed: int, max_length: int) -> int:
    """The slots a step reads when it needs `needed` of a `max_length`-slot cache."""
    size = MIN_VISIBLE
    while size < needed:
        size *= 2
    return min(size, max_length)


def decode_step(
    model, kv_cache, token: Tensor, input_pos: Tensor, positions: Tensor, padding_mask
) -> Tensor:
    """One decode step on fixed shapes: next-token logits (B, V), float32.

    token (B, 1), input_pos (1,) the cache slot it takes, positions (B, 1) its position ids,
    padding_mask (B, S) or None. Compile this function from outside the model.
    """
    logits, _ = model(
        token,
        kv_cache=kv_cache,
        input_pos=input_pos,
        positions=positions,
        padding_mask=padding_mask,
    )
    return logits[:, -1].float()  # (B, V)


def extend_step(
    model, kv_cache, tokens: Tensor, input_pos: Tensor, positions: Tensor, padding_mask
) -> Tensor:
    """Several tokens per row at once (speculative decoding's check): the logits after each,
    (B, n, V) float32. tokens (B, n), input_pos (n,) their slots, positions (B, n)."""
    logits, _ = model(
        tokens,
        kv_cache=kv_cache,
        input_pos=input_pos,
        positions=positions,
        padding_mask=padding_mask,
        all_logits=True,
    )
    return logits.float()  # (B, n, V)


# mode="reduce-overhead" (CUDA graphs) and gpt-fast's coordinate-descent tuning: see below.
COMPILE_OPTIONS = {"triton.cudagraphs": True, "coordinate_descent_tuning": True}
_compiled_decode_step = None
_compiled_extend_step = None


def compiled_decode_step():
    """`decode_step` compiled once per process, captured in CUDA graphs on the GPU.

    One compiled function serves every Decoder, so its graphs are reused across calls with
    the same shapes rather than recompiled. Each new shape (batch size, cache length) gets its
    own fully specialised graph (dynamic=False): a decode step is fastest on fixed shapes.

    The options are mode="reduce-overhead" (CUDA graphs) plus coordinate-descent tuning, as
    gpt-fast compiles its decoding: with it, Inductor writes a one-row matrix product
    (batch 1) as its own fused reduction rather than a cuBLAS call, which reaches the memory
    bandwidth and folds a weight's conversion into the product, so an int8 weight is read as
    int8 (torch/_inductor/decomposition.py, `mm`). The tuning costs compile time, not speed.
    """
    global _compiled_decode_step
    if _compiled_decode_step is None:
        # One graph per (batch size, visible slots) pair: more than dynamo keeps by default.
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        _compiled_decode_step = torch.compile(
            decode_step, options=COMPILE_OPTIONS, fullgraph=True, dynamic=False
        )
    return _compiled_decode_step


def compiled_extend_step():
    """`extend_step` compiled once per process, as `compiled_decode_step` is."""
    global _compiled_extend_step
    if _compiled_extend_step is None:
        compiled_decode_step()  # the shared settings
        _compiled_extend_step = torch.compile(
            extend_step, options=COMPILE_OPTIONS, fullgraph=True, dynamic=False
        )
    return _compiled_extend_step


def cuda_graphs_in_this_thread() -> None:
    """Let compiled decoding capture CUDA graphs in a thread other than the one that imported
    torch's CUDA graph trees (the server's scheduler thread, say).

    The trees keep their managers in thread-local storage. Newer torch sets it up for any new
    thread by itself; torch 2.11 has it only in the importing thread (and the autograd threads it
    starts), so a second thread's first graph fails an assertion in `get_obj`. This gives the
    calling thread storage of its own, as the newer releases do. A no-op where it is not needed.
    """
    try:
        from torch._inductor import cudagraph_trees as trees
    except ImportError:  # a build without Inductor: nothing is captured
        return
    if hasattr(trees, "_initialize_tls") or hasattr(trees.local, "tree_manager_containers"):
        return  # newer torch, or a thread that has its storage
    if torch._C._is_key_in_tls("tree_manager_containers"):
        return  # a thread that inherited the storage
    trees.local.tree_manager_containers = {}
    trees.local.tree_manager_locks = collections.defaultdict(threading.Lock)


def left_pad(
    rows: list[list[int]] | list[Tensor], pad_id: int, device=None
) -> tuple[Tensor, Tensor]:
    """Stack token rows of different lengths, padded on the left with `pad_id`.

    Returns ids (B, T) and mask (B, T), True on tokens.
    """
    T = max(len(row) for row in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(rows), T), dtype=torch.bool, device=device)
    for i, row in enumerate(rows):
        if len(row):
            ids[i, T - len(row) :] = torch.as_tensor(row, dtype=torch.long, device=device)
            mask[i, T - len(row) :] = True
    return ids, mask


class Decoder:
    """A model with its static KV cache and its (optionally compiled) decode step.

    `prefill` starts a batch, `step` adds one token per row, `reorder` permutes the rows (beam
    search), `slide` restarts a full window from its last tokens. The cache is kept between
    batches of the same shape, so a Decoder reused across calls reuses its compiled graphs.
    `cache_length` fixes the number of cache slots (at least what each call needs), so calls
    with different lengths share one compiled step: a demo that compiles should use
    `Decoder(model, compile=True, cache_length=model.config.context_length)`, or every new
    prompt length would compile again.
    """

    def __init__(self, model, *, compile: bool = False, cache_length: int | None = None):
        self.model = model
        self.context_length = model.config.context_length
        if cache_length is not None and not 0 < cache_length <= self.context_length:
            raise ConfigError(
                f"cache_length must be in 1..{self.context_length}, got {cache_length}"
            )
        self.cache_length = cache_length
        self.compile = compile
        self._step = compiled_decode_step() if compile else decode_step
        self._extend = compiled_extend_step() if compile else extend_step
        self.kv_cache = None
        self.length = 0  # slots written so far: the next token goes into slot `length`

    @property
    def device(self) -> torch.device:
        # The float layers' (ln_f): a quantized output layer's weight may be int8, or, in
        # torch.ao's quantized Linear, a method.
        return self.model.ln_f.weight.device

    @property
    def max_length(self) -> int:
        return self.kv_cache[0].max_length

    def prefill(self, ids: Tensor, padding_mask: Tensor | None, max_length: int) -> Tensor:
        """Fill a cache of at least `max_length` slots with the left-padded prompts `ids` (B, T).

        padding_mask (B, T) is True on real tokens (None: no padding). Returns the logits of
        each row's next token (B, V), float32.
        """
        B, T = ids.shape
        self._allocate(B, max(max_length, self.cache_length or 0))
        S = self.max_length
        if padding_mask is None:
            self.padding_mask = None
            self.positions = torch.full((B,), T, dtype=torch.long, device=self.device)
            positions = None
        else:
            self.padding_mask = torch.ones(B, S, dtype=torch.bool, device=self.device)
            self.padding_mask[:, :T] = padding_mask
            # (B, T) position ids: 0 at each row's first token (padding gets 0 too, unused)
            positions = (padding_mask.long().cumsum(-1) - 1).clamp_min(0)
            self.positions = padding_mask.sum(-1)  # (B,) the position of each row's next token
        input_pos = torch.arange(T, device=self.device)
        self._show(T)
        logits, _ = self.model(
            ids,
            kv_cache=self.kv_cache,
            input_pos=input_pos,
            positions=positions,
            padding_mask=self.padding_mask,
        )
        self.input_pos = torch.tensor([T], device=self.device)
        self.length = T
        return logits[:, -1].float()  # (B, V)

    def open_rows(self, batch_size: int, max_length: int) -> None:
        """An empty batch of `batch_size` rows and `max_length` slots, every slot visible, at
        slot 0: for rows that join and leave one at a time (continuous batching, in
        `gptlab.serve.scheduler`), which then writes each row's cache, position and mask."""
        self._allocate(batch_size, max_length)
        self.padding_mask = torch.ones(batch_size, max_length, dtype=torch.bool, device=self.device)
        self.positions = torch.zeros(batch_size, dtype=torch.long, device=self.device)
        self.input_pos = torch.zeros(1, dtype=torch.long, device=self.device)
        self.length = 0

    def step(self, token: Tensor) -> Tensor:
        """Feed one token per row (B,) into the next slot; return the following logits (B, V)."""
        if self.length >= self.max_length:
            # Checked here, on the host: inside the model a slot past the cache is an IndexError
            # (or, on a GPU, a device-side assert), and checking there would wait for the GPU.
            raise ContextLengthError(
                f"the KV cache is full: all {self.max_length} slots hold tokens already"
            )
        self._show(self.length + 1)
        logits = self._step(
            self.model,
            self.kv_cache,
            token[:, None],
            self.input_pos,
            self.positions[:, None],
            self.padding_mask,
        )
        # In place, so a CUDA graph replays with the new values and nothing waits on the host.
        self.input_pos += 1
        self.positions += 1
        self.length += 1
        return logits

    def extend(self, tokens: Tensor) -> Tensor:
        """Feed n tokens per row (B, n) into the next n slots; the logits after each (B, n, V)."""
        n = tokens.size(1)
        self._show(self.length + n)
        offsets = torch.arange(n, device=self.device)
        logits = self._extend(
            self.model,
            self.kv_cache,
            tokens,
            self.input_pos + offsets,
            self.positions[:, None] + offsets,
            self.padding_mask,
        )
        self.input_pos += n
        self.positions += n
        self.length += n
        return logits

    def rewind(self, length: int) -> None:
        """Forget the slots from `length` on (speculative decoding drops rejected tokens): they
        are hidden from attention until written again."""
        if not 0 < length <= self.length:
            raise ValueError(f"can rewind to 1..{self.length} slots, not {length}")
        back = self.length - length
        self.input_pos -= back
        self.positions -= back
        self.length = length

    def _show(self, needed: int) -> None:
        """Let attention read the first slots of the cache, at least `needed` of them."""
        visible = visible_slots(needed, self.max_length)
        if visible != self.kv_cache[0].visible:  # changes a few times a generation
            for layer in self.kv_cache:
                layer.visible = visible

    @property
    def full(self) -> bool:
        return self.length >= self.max_length

    def reorder(self, index: Tensor) -> None:
        """Make row i of the cache a copy of row index[i] (beam search keeps the best beams)."""
        for layer in self.kv_cache:
            for buffer in (layer.k, layer.v):
                # Written in place: a compiled step holds on to these buffers' addresses.
                buffer[:, :, : self.length].copy_(buffer[index, :, : self.length])
        self.positions = self.positions[index]
        if self.padding_mask is not None:
            self.padding_mask = self.padding_mask[index]

    def slide(self, history: Tensor, pad_id: int) -> Tensor:
        """Restart from the last SLIDE_KEEP of each row's tokens (history (B, T), pad_id where no
        token); return the next-token logits (B, V)."""
        keep = max(1, int(self.context_length * SLIDE_KEEP))
        rows = [row[row != pad_id][-keep:] for row in history]
        ids, mask = left_pad(rows, 0, device=self.device)
        return self.prefill(ids, None if bool(mask.all()) else mask, self.max_length)

    def _allocate(self, batch_size: int, max_length: int) -> None:
        if max_length > self.context_length:
            raise ContextLengthError(
                f"cannot decode {max_length} positions: the model's context is "
                f"{self.context_length}"
            )
        shape = (batch_size, max_length)
        if self.kv_cache is not None and (self.kv_cache[0].k.size(0), self.max_length) == shape:
            return  # slots past a new prompt are hidden by the causal mask until rewritten
        self.kv_cache = None  # free the old cache before making the new one
        # The cache holds activations: their dtype is the float layers' (ln_f), which is not
        # the output layer's weight's once quantization has made that int8.
        dtype = self.model.ln_f.weight.dtype
        self.kv_cache = self.model.new_kv_cache(
            batch_size, max_length, dtype=dtype, device=self.device
        )
        if self.compile and self.device.type == "cuda":
            # CUDA graphs replay fixed addresses: declaring the cache static lets the graph
            # read and write it in place instead of copying it in and out at every step.
            for layer in self.kv_cache:
                torch._dynamo.mark_static_address(layer.k)
                torch._dynamo.mark_static_address(layer.v)


def plan_lengths(prompt_length: int, config, context_length: int) -> tuple[int, int]:
    """(cache slots, new tokens before the context is full) for prompts of `prompt_length`.

    With overflow="slide" the token count is unbounded (the window slides); with "stop", a
    prompt that leaves no room in the context is an error.
    """
    if config.overflow == "slide":
        return min(prompt_length + config.max_new_tokens, context_length), config.max_new_tokens
    if prompt_length >= context_length:
        raise ContextLengthError(
            f"a prompt of {prompt_length} tokens leaves no room for new tokens in the model's "
            f"context of {context_length}; shorten it, or pass overflow='slide' to keep only "
            "its last tokens"
        )
    room = context_length - prompt_length
    return prompt_length + min(config.max_new_tokens, room), min(config.max_new_tokens, room)


def warn_if_context_full(new_tokens: int, config, context_length: int) -> None:
    """Say so when the context cut generation short of `config.max_new_tokens`."""
    if new_tokens < config.max_new_tokens:
        warnings.warn(
            f"generation stopped after {new_tokens} new tokens: prompt and new tokens filled "
            f"the model's context of {context_length} tokens; pass overflow='slide' "
            "to keep going",
            stacklevel=3,
        )


def prepare_prompts(
    prompts: list[list[int]], config, vocab_size: int, context_length: int
) -> list[list[int]]:
    """Check the prompts; start empty ones at EOS; crop long ones when the window slides."""
    prepared = []
    for prompt in prompts:
        prompt = list(prompt)
        if not prompt:
            if config.eos_id is None:
                raise ConfigError(
                    "empty prompt: give at least one token, or set eos_id to start from the "
                    "end-of-text token"
                )
            # GPT-2 saw <|endoftext|> before every document: a natural start.
            prompt = [config.eos_id]
        if min(prompt) < 0 or max(prompt) >= vocab_size:
            bad = next(t for t in prompt if not 0 <= t < vocab_size)
            raise ConfigError(f"token id {bad} is outside the model's vocabulary of {vocab_size}")
        if config.overflow == "slide" and len(prompt) >= context_length:
            prompt = prompt[-int(context_length * SLIDE_KEEP) :]
        prepared.append(prompt)
    return prepared
