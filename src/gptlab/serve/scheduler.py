"""Continuous batching: one thread owns the model and decodes every running request together.

A server that decodes one request at a time leaves a GPU mostly idle: a decode step reads every
weight to make one token, and the same read could make a token for 32 requests. So the
`Scheduler` keeps one batch running on a static KV cache of `max_batch` rows and the model's
context of slots, and requests join it and leave it between steps, each with its own sampling
settings and stop conditions (Yu et al. 2022, Orca, call this iteration-level scheduling).

The cache layout is the one `Decoder` gives a left-padded batch: every row shares one write
pointer (`length`, the slot the next token of every row goes into), and a row's text ends just
before it. A sequence joins by having its prompt prefilled on its own and copied into a free row
right-aligned to the pointer, slots [length - P, length); its padding mask hides the slots
before. A sequence that finishes, or whose client has gone, frees its row at once. When the
pointer would run out of slots, the rows are *compacted*: every row's slots move left by the
start of the oldest running row (attention only sees slots through the mask, and position ids
are kept per row, so moving a row's slots changes nothing it computes).

Admission keeps one invariant: for every running row, `length + steps_left <= slots`. Each step
adds one to the first and takes one from the second, so a row admitted under it never runs out
of room. A sequence that cannot be placed yet waits (first come, first served) for rows to end.

Beam search cannot take a row: a request for it is num_beams rows whose caches are reordered at
every step, and it knows its text only when the search ends. So a beam request runs gptlab's own
`beam_hypotheses` on a decoder of its own (`BetweenSteps`, at most `max_batch` rows), one
request at a time, and the running batch takes one step between two steps of the search: the
other requests keep decoding beside it, and new ones keep joining. When the search ends, its
best hypotheses are given out token by token, as the batch gives its tokens, and end where the
batch's would (EOS, a stop string, max_tokens).

Requests talk to the thread through `submit` (from any thread) and their `emit` callback (called
from the scheduler thread with each `Event`); `stop` lets the running work finish and ends it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from gptlab.errors import ContextLengthError, GptlabError
from gptlab.generation import (
    Decoder,
    GenerationConfig,
    TextAssembler,
    beam_hypotheses,
    left_pad,
    next_token,
)
from gptlab.generation.decoder import cuda_graphs_in_this_thread
from gptlab.generation.loop import eval_mode, new_generator

log = logging.getLogger("gptlab.serve")

DECODING_FAILED = "internal error while decoding"  # what a client hears of a fault of the server


class QueueFull(GptlabError):
    """Too many sequences wait for a row: the client should retry later (HTTP 429)."""


class Unavailable(GptlabError):
    """The scheduler has stopped, or is stopping: no new requests (HTTP 503)."""


class Cancelled(Exception):
    """Abandon a beam search: its client has gone."""


@dataclass
class Event:
    """One new token of one sequence (`index`), or its end (`finish_reason` set).

    `text` is the text that token made certain (possibly "": see `TextAssembler`), `logprob` the
    token's log-probability under the model and `top` the most likely tokens with theirs, when
    the request asked for logprobs. `error` ends the request with a message (a server fault).
    """

    index: int
    text: str = ""
    token: int | None = None
    logprob: float | None = None
    top: list[tuple[int, float]] | None = None
    finish_reason: str | None = None  # "stop", "length" or "cancelled"
    error: str | None = None


@dataclass(eq=False)
class Request:
    """What a client asked for: prompts (token ids), decoding settings, n continuations of each.

    Choice `i * n + j` is continuation j of prompt i, each with seed `config.seed + j` when the
    config has a seed; with beam search (`config.uses_beams`), the j-th best hypothesis of
    prompt i (n <= num_beams). `emit` receives every Event, from the scheduler's thread. Setting
    `cancelled` (any thread) frees the request's rows before the next step.
    """

    prompts: list[list[int]]
    config: GenerationConfig
    emit: Callable[[Event], None]
    n: int = 1
    logprobs: int | None = None  # how many top tokens to report with each token (0: just its own)
    cancelled: bool = False

    @property
    def choices(self) -> int:
        return len(self.prompts) * self.n


@dataclass(eq=False)  # two sequences are the same only if they are one object
class Sequence:
    """One continuation being written: a row of the batch while it runs."""

    request: Request
    index: int
    prompt: list[int]
    config: GenerationConfig
    assembler: TextAssembler
    generator: torch.Generator | None = None
    tokens: list[int] = field(default_factory=list)  # every token picked, EOS included
    row: int | None = None
    start: int = 0  # the slot of its first prompt token

    @property
    def steps_left(self) -> int:
        """Decode steps it still needs: its first token comes from the prefill, not a step."""
        return self.config.max_new_tokens - max(1, len(self.tokens))

    @property
    def length(self) -> int:
        return len(self.prompt) + len(self.tokens)


class Scheduler:
    """Owns the model in a thread of its own and decodes all running sequences as one batch.

    max_batch: rows of the running batch; max_queue: sequences that may wait for a row (more is
    QueueFull); compile: capture the decode step in a CUDA graph (see `Decoder`).
    """

    def __init__(
        self, model, tokenizer, *, max_batch: int = 8, max_queue: int = 64, compile: bool = False
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.slots = model.config.context_length
        self.vocab_size = model.config.vocab_size
        self.decoder = Decoder(model, compile=compile)  # the running batch
        self.prefiller = Decoder(model)  # prompts that join it, before they are copied in
        # Beam searches: num_beams rows of the model's context, num_beams <= max_batch (checked
        # by the API), so they never need more memory than the running batch.
        self.beam_decoder = BetweenSteps(model, compile=compile, cache_length=self.slots)
        self.rows: list[Sequence | None] = [None] * max_batch
        self.waiting: deque[Sequence] = deque()
        self.beam_waiting: deque[list[Sequence]] = deque()  # the choices of each beam request
        self.beam_running = 0  # the choices of the beam search under way
        self.wakeup = threading.Condition()
        self.stopping = False
        self.ready = threading.Event()
        self.startup_error: Exception | None = None
        self.thread = threading.Thread(target=self._run, name="gptlab-scheduler", daemon=True)

    # -- the client side (any thread) ------------------------------------------------------

    def start(self) -> None:
        """Start the thread; raise here what stops it from starting (a cache too big to fit)."""
        self.thread.start()
        self.ready.wait()
        if self.startup_error is not None:
            raise self.startup_error

    def submit(self, request: Request) -> None:
        """Queue a request's sequences; QueueFull when there is no room for them in the queue,
        ContextLengthError when one could never fit the cache."""
        sequences = [
            Sequence(
                request,
                index=i * request.n + j,
                prompt=prompt,
                config=_nth_seed(request.config, j),
                assembler=TextAssembler(self.tokenizer, request.config.stop),
            )
            for i, prompt in enumerate(request.prompts)
            for j in range(request.n)
        ]
        for seq in sequences:
            if len(seq.prompt) + seq.config.max_new_tokens > self.slots:
                raise ContextLengthError(
                    f"{len(seq.prompt)} prompt tokens and {seq.config.max_new_tokens} new ones "
                    f"do not fit the model's context of {self.slots}"
                )
        with self.wakeup:
            if self.stopping or not self.thread.is_alive():
                raise Unavailable("the server is shutting down: it takes no new requests")
            waiting = self.queue_depth
            if waiting + len(sequences) > self.max_queue:
                raise QueueFull(
                    f"the queue is full ({waiting} of {self.max_queue} sequences wait for a "
                    "row): retry later"
                )
            if request.config.uses_beams:
                self.beam_waiting.append(sequences)
            else:
                self.waiting.extend(sequences)
            self.wakeup.notify()

    @property
    def queue_depth(self) -> int:
        return len(self.waiting) + sum(len(choices) for choices in self.beam_waiting)

    @property
    def running(self) -> int:
        return sum(seq is not None for seq in self.rows) + self.beam_running

    def stop(self, timeout: float | None = None) -> None:
        """Finish the running and waiting sequences, then end the thread."""
        with self.wakeup:
            self.stopping = True
            self.wakeup.notify()
        if self.thread.is_alive():
            self.thread.join(timeout)

    # -- the scheduler thread --------------------------------------------------------------

    def _run(self) -> None:
        cuda_graphs_in_this_thread()  # the compiled steps capture their graphs in this thread
        with torch.inference_mode(), eval_mode(self.model):
            try:
                self.decoder.open_rows(self.max_batch, self.slots)
                # Each row's text so far (prompt and new tokens), for the penalties; V: no token.
                self.history = torch.full(
                    (self.max_batch, self.slots), self.vocab_size, device=self.decoder.device
                )
            except Exception as error:
                self.startup_error = error
                return
            finally:
                self.ready.set()
            while self._wait_for_work():
                if self.beam_waiting:  # only this thread takes from it: it stays non-empty
                    with self.wakeup:
                        beams = self.beam_waiting.popleft()
                    self._beam_search(beams)
                else:
                    self._step_batch()

    def _wait_for_work(self) -> bool:
        """Block until there is something to do; False once stopping with nothing left."""
        with self.wakeup:
            while not (self.waiting or self.beam_waiting or self.running):
                if self.stopping:
                    return False
                self.wakeup.wait()
        return True

    def _step_batch(self) -> None:
        try:
            self._iteration()
        except Exception:  # a fault of the server, not of a request: report, go on
            log.exception("decoding failed; the running requests end with an error")
            self._fail_running()

    def _iteration(self) -> None:
        """Drop cancelled rows, admit waiting sequences (one prefill), decode one step."""
        for seq in self.rows:
            if seq is not None and seq.request.cancelled:
                self._finish(seq, Event(seq.index, finish_reason="cancelled"))
        with self.wakeup:
            joining = self._admit()
        if joining:
            self._prefill(joining)
        running = [seq for seq in self.rows if seq is not None]
        if running:
            tokens = torch.zeros(self.max_batch, dtype=torch.long)
            for seq in running:
                tokens[seq.row] = seq.tokens[-1]
            logits = self.decoder.step(tokens.to(self.decoder.device))  # (max_batch, V)
            rows = torch.tensor([seq.row for seq in running], device=logits.device)
            self._pick(running, logits[rows])

    def _admit(self) -> list[Sequence]:
        """Give free rows to waiting sequences, first come first served, while they fit."""
        joining = []
        while self.waiting:
            seq = self.waiting[0]
            if seq.request.cancelled:
                self.waiting.popleft()
                seq.request.emit(Event(seq.index, finish_reason="cancelled"))
                continue
            free = [row for row, occupant in enumerate(self.rows) if occupant is None]
            if not free or not self._make_room(len(seq.prompt), seq.config.max_new_tokens):
                break
            self.waiting.popleft()
            seq.row, seq.start = free[0], self.decoder.length - len(seq.prompt)
            self.rows[seq.row] = seq
            joining.append(seq)
        return joining

    def _make_room(self, prompt_length: int, max_new_tokens: int) -> bool:
        """Move the pointer (and the rows with it) so a new prompt fits before it and every row,
        old and new, can finish; False when that is impossible until some rows end."""
        running = [seq for seq in self.rows if seq is not None]
        if not running:
            self._move_to(0)
        for attempt in ("as is", "compacted"):
            if attempt == "compacted":
                oldest = min(seq.start for seq in running)
                if oldest == 0:
                    return False
                self._shift(-oldest)
            pointer = max(self.decoder.length, prompt_length)
            needs = [pointer + seq.steps_left for seq in running] + [pointer + max_new_tokens - 1]
            if max(needs) <= self.slots:
                self._shift(pointer - self.decoder.length)
                return True
            if not running:
                return False
        return False

    def _shift(self, offset: int) -> None:
        """Move every row's slots by `offset` (negative: left), and the pointer with them."""
        if offset == 0:
            return
        length = self.decoder.length
        src = slice(max(0, -offset), length)
        dst = slice(max(0, offset), length + offset)
        for layer in self.decoder.kv_cache:
            for buffer in (layer.k, layer.v):  # (B, nh, S, hs); in place: a CUDA graph reads it
                buffer[:, :, dst] = buffer[:, :, src].clone()
        for seq in self.rows:
            if seq is not None:
                seq.start += offset
        self._move_to(length + offset)

    def _move_to(self, length: int) -> None:
        self.decoder.length = length
        self.decoder.input_pos.fill_(length)
        self._update_masks()

    def _update_masks(self) -> None:
        """Each running row sees its own slots only; a free row sees everything (it is ignored,
        but an all-hidden row would make NaNs) and sits at position 0."""
        mask = torch.ones(self.max_batch, self.slots, dtype=torch.bool)
        free = []
        for row, seq in enumerate(self.rows):
            if seq is None:
                free.append(row)
            else:
                mask[row, : seq.start] = False
        self.decoder.padding_mask = mask.to(self.decoder.device)
        if free:
            self.decoder.positions[free] = 0

    def _prefill(self, joining: list[Sequence]) -> None:
        """Run the joining prompts through the model together, copy each one's keys and values
        into its row, and pick its first token."""
        device = self.decoder.device
        ids, mask = left_pad([seq.prompt for seq in joining], 0, device=device)  # (J, T)
        T = ids.size(1)
        padded = any(len(seq.prompt) < T for seq in joining)
        logits = self.prefiller.prefill(ids, mask if padded else None, T)  # (J, V)
        for j, seq in enumerate(joining):
            P = len(seq.prompt)
            for row_cache, prompt_cache in zip(self.decoder.kv_cache, self.prefiller.kv_cache):
                row_cache.k[seq.row, :, seq.start : seq.start + P] = prompt_cache.k[j, :, T - P :]
                row_cache.v[seq.row, :, seq.start : seq.start + P] = prompt_cache.v[j, :, T - P :]
            self.decoder.positions[seq.row] = P
            self.history[seq.row] = self.vocab_size
            self.history[seq.row, :P] = torch.tensor(seq.prompt, device=device)
            seq.generator = new_generator(seq.config, device)
        self._update_masks()
        self._pick(joining, logits)

    def _pick(self, sequences: list[Sequence], logits: Tensor) -> None:
        """Choose each sequence's next token from its logits (one row each), with its own
        settings: sequences that decode alike are processed together."""
        for group in _groups(sequences):
            config = group[0].config
            rows = [sequences.index(seq) for seq in group]
            row_ids = torch.tensor([seq.row for seq in group], device=logits.device)
            history = self.history[row_ids, : max(seq.length for seq in group)]
            group_logits = logits[rows]  # (G, V)
            chosen = next_token(group_logits, history, config, group[0].generator)  # (G,)
            for seq, (token, logprob, top) in zip(
                group, _with_logprobs(group_logits, chosen, group[0].request.logprobs)
            ):
                if seq.length < self.slots:
                    self.history[seq.row, seq.length] = token
                self._accept(seq, token, logprob, top)

    def _accept(self, seq: Sequence, token: int, logprob, top) -> bool:
        """Add a token to a sequence; tell its client; end it at EOS, a stop string, or its
        token limit (and say whether it ended)."""
        seq.tokens.append(token)
        if token == seq.config.stop_id:
            text, reason = seq.assembler.finish(), "stop"
        else:
            text = seq.assembler.push([token])
            reason = "stop" if seq.assembler.stopped else None
            if reason is None and len(seq.tokens) >= seq.config.max_new_tokens:
                text, reason = text + seq.assembler.finish(), "length"
        event = Event(seq.index, text, token, logprob, top)
        if reason is None:
            seq.request.emit(event)
        else:
            self._finish(seq, dataclasses.replace(event, finish_reason=reason))
        return reason is not None

    def _finish(self, seq: Sequence, event: Event) -> None:
        if seq.row is not None:  # the batch's sequences hold a row; a beam search's do not
            self.rows[seq.row] = None
            self._update_masks()
        seq.request.emit(event)

    # -- beam search ------------------------------------------------------------------------

    def _beam_search(self, sequences: list[Sequence]) -> None:
        """Answer a beam request: one search per prompt, with the running batch stepping between
        two of its steps; then its n best hypotheses, given out as the batch gives tokens."""
        request = sequences[0].request
        n, ended = request.n, 0

        def between_steps():
            if request.cancelled:
                raise Cancelled
            self._step_batch()

        self.beam_running = len(sequences)
        self.beam_decoder.before_step = between_steps
        try:
            for prompt in request.prompts:
                if request.cancelled:
                    raise Cancelled
                ids = torch.tensor([prompt], device=self.beam_decoder.device)  # (1, P)
                best = beam_hypotheses(self.beam_decoder, ids, None, request.config, n)[0]
                for seq, tokens in zip(sequences[ended : ended + n], best):
                    self._replay(seq, tokens)
                ended += n
        except Cancelled:
            for seq in sequences[ended:]:
                request.emit(Event(seq.index, finish_reason="cancelled"))
        except Exception:  # a fault of the server: report, go on with the batch
            log.exception("beam search failed; its request ends with an error")
            for seq in sequences[ended:]:
                request.emit(Event(seq.index, finish_reason="error", error=DECODING_FAILED))
        finally:
            self.beam_decoder.before_step = BetweenSteps.nothing
            self.beam_running = 0

    def _replay(self, seq: Sequence, tokens: list[int]) -> None:
        """Give out a finished hypothesis token by token, ending it where the batch would: the
        search ignores stop strings, so its text is cut after the fact, as `generate` cuts it."""
        for token in tokens:
            if self._accept(seq, token, None, None):
                return
        # Only a hypothesis shorter than max_tokens without EOS gets here (an empty one, when
        # penalties ban every token): end it all the same, so its client is not left waiting.
        self._finish(seq, Event(seq.index, seq.assembler.finish(), finish_reason="length"))

    def _fail_running(self) -> None:
        for seq in self.rows:
            if seq is not None:
                self._finish(seq, Event(seq.index, finish_reason="error", error=DECODING_FAILED))


class BetweenSteps(Decoder):
    """A `Decoder` that calls `before_step()` before each decode step.

    The scheduler's beam searches run on one: `before_step` lets the running batch take a step
    of its own, so both advance together, and raises `Cancelled` to abandon the search. The
    search itself is gptlab's one `beam_hypotheses`, unchanged.
    """

    def __init__(self, model, **options):
        super().__init__(model, **options)
        self.before_step: Callable[[], None] = self.nothing

    @staticmethod
    def nothing() -> None:
        pass

    def step(self, token: Tensor) -> Tensor:
        self.before_step()
        return super().step(token)


def _nth_seed(config: GenerationConfig, j: int) -> GenerationConfig:
    """The config of continuation j of a prompt: its own seed, so the n continuations differ."""
    if config.seed is None or j == 0:
        return config
    return dataclasses.replace(config, seed=config.seed + j)


def _groups(sequences: list[Sequence]) -> list[list[Sequence]]:
    """Sequences whose next tokens one `next_token` call can pick: the same settings, no seeded
    generator of their own, and no n-gram ban (it reads each row's last tokens, so rows of
    different lengths cannot share a call)."""
    groups: dict[object, list[Sequence]] = {}
    for seq in sequences:
        config = seq.config
        alone = seq.generator is not None or config.no_repeat_ngram_size > 0
        key = (
            id(seq)
            if alone
            else (
                config.samples,
                config.temperature if config.samples else None,
                config.top_k,
                config.top_p,
                config.min_p,
                config.repetition_penalty,
                seq.request.logprobs,
            )
        )
        groups.setdefault(key, []).append(seq)
    return list(groups.values())


def _with_logprobs(logits: Tensor, chosen: Tensor, top: int | None):
    """(token, its log-probability, the `top` most likely (token, log-probability)) per row.

    Log-probabilities are the model's own (log-softmax of its logits), before temperature and
    filtering, as OpenAI's API reports them; None when the request did not ask for them.
    """
    tokens = chosen.tolist()
    if top is None:
        return [(token, None, None) for token in tokens]
    logprobs = logits.log_softmax(dim=-1)  # (G, V)
    own = logprobs.gather(1, chosen[:, None])[:, 0].tolist()
    best = logprobs.topk(top, dim=-1) if top else None
    tops = (
        [list(zip(i, v)) for i, v in zip(best.indices.tolist(), best.values.tolist())]
        if best is not None
        else [[] for _ in tokens]
    )
    return list(zip(tokens, own, tops))
