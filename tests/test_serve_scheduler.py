"""The server's scheduler alone (no HTTP, no FastAPI): continuous batching on the static KV
cache gives every request the tokens `generate` gives it alone, however the rows come and go.

On a machine with CUDA the same test runs on the GPU with the decode step compiled into a CUDA
graph (float32, so that batching cannot change a greedy token by rounding).
"""

from __future__ import annotations

import dataclasses
import string
import threading

import pytest
import torch

from gptlab.config import GPTConfig
from gptlab.errors import ContextLengthError
from gptlab.generation import Decoder, GenerationConfig, beam_search, generate
from gptlab.models.gpt import GPT
from gptlab.serve.scheduler import Request, Scheduler
from gptlab.tokenizers.char import CharTokenizer

TOKENIZER = CharTokenizer.from_text(string.printable)
PROMPTS = ["ROMEO:", "To be, or not", "a"]

DEVICES = [
    pytest.param("cpu", False, id="cpu"),
    pytest.param(
        "cuda",
        True,
        id="cuda-compiled",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    ),
]


def tiny_model(context: int = 32, device: str = "cpu") -> GPT:
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=TOKENIZER.vocab_size, context_length=context, n_layer=2, n_head=2, n_embd=32
    )
    model = GPT(config)
    with torch.no_grad():
        for p in model.parameters():  # wide weights: peaked, varied predictions (no ties)
            p.normal_(std=0.3)
        model.wpe.weight *= 4
    return model.to(device).eval()


def run_all(scheduler: Scheduler, jobs: list[tuple[str, GenerationConfig]]) -> list[list[int]]:
    """Submit every job at once; each one's tokens once all have finished."""
    finished = threading.Semaphore(0)
    tokens = [[] for _ in jobs]

    def emit_to(i):
        def emit(event):
            tokens[i].append(event.token)
            if event.finish_reason:
                finished.release()

        return emit

    for i, (prompt, config) in enumerate(jobs):
        scheduler.submit(Request([TOKENIZER.encode(prompt)], config, emit_to(i)))
    for _ in jobs:
        assert finished.acquire(timeout=120)
    return tokens


@pytest.mark.parametrize("device, compile", DEVICES)
def test_rows_are_compacted_when_the_pointer_runs_out_of_slots(device, compile):
    """A 32-slot cache and requests of up to 30 positions, arriving while others run: the
    pointer must move rows left (and right) to fit them, and nothing they compute changes."""
    model = tiny_model(context=32, device=device)
    scheduler = Scheduler(model, TOKENIZER, max_batch=3, max_queue=20, compile=compile)
    shifts = []
    shift = scheduler._shift
    scheduler._shift = lambda offset: (shifts.append(offset), shift(offset))
    jobs = [
        (PROMPTS[i % 3], GenerationConfig(max_new_tokens=5 + (7 * i) % 15, strategy="greedy"))
        for i in range(10)
    ]
    scheduler.start()
    try:
        tokens = run_all(scheduler, jobs)
    finally:
        scheduler.stop(30)
    for got, (prompt, config) in zip(tokens, jobs):
        assert got == generate(model, [TOKENIZER.encode(prompt)], config)[0]
    assert any(offset < 0 for offset in shifts) and any(offset > 0 for offset in shifts)


def test_each_request_keeps_its_own_settings_in_a_shared_batch():
    """Greedy, seeded sampling and a repetition penalty side by side in one batch."""
    model = tiny_model(context=64)
    scheduler = Scheduler(model, TOKENIZER, max_batch=4, max_queue=8)
    jobs = [
        ("ROMEO:", GenerationConfig(max_new_tokens=20, strategy="greedy")),
        ("ROMEO:", GenerationConfig(max_new_tokens=20, temperature=0.8, top_k=5, seed=3)),
        ("ROMEO:", GenerationConfig(max_new_tokens=20, strategy="greedy", repetition_penalty=2.0)),
        ("a", GenerationConfig(max_new_tokens=20, strategy="greedy", no_repeat_ngram_size=2)),
    ]
    scheduler.start()
    try:
        tokens = run_all(scheduler, jobs)
    finally:
        scheduler.stop(30)
    for got, (prompt, config) in zip(tokens, jobs):
        assert got == generate(model, [TOKENIZER.encode(prompt)], config)[0]


@pytest.mark.parametrize("device, compile", DEVICES)
def test_a_beam_search_beside_the_batch_finds_the_librarys_beams(device, compile):
    """Two beam requests and greedy ones submitted together: the searches run one after the
    other on their own cache while the batch steps between their steps, and each request gets
    the tokens `generate` gives it alone."""
    model = tiny_model(context=64, device=device)
    scheduler = Scheduler(model, TOKENIZER, max_batch=4, max_queue=16, compile=compile)
    beams = GenerationConfig(max_new_tokens=25, strategy="beam", num_beams=3, length_penalty=0.5)
    jobs = [
        ("To be, or not", GenerationConfig(max_new_tokens=40, strategy="greedy")),
        ("ROMEO:", beams),
        ("a", GenerationConfig(max_new_tokens=30, strategy="greedy")),
        ("a", dataclasses.replace(beams, num_beams=4, early_stopping=True)),
    ]
    scheduler.start()
    try:
        tokens = run_all(scheduler, jobs)
    finally:
        scheduler.stop(30)
    for got, (prompt, config) in zip(tokens, jobs):
        assert got == generate(model, [TOKENIZER.encode(prompt)], config)[0]
    assert tokens[1] != generate(model, [TOKENIZER.encode("ROMEO:")], jobs[2][1])[0][:25]


def test_a_beam_search_that_ends_at_eos_ends_its_request_with_stop():
    model = tiny_model(context=64)
    ids = TOKENIZER.encode("ROMEO:")
    config = GenerationConfig(max_new_tokens=25, strategy="beam", num_beams=3)
    config = dataclasses.replace(config, eos_id=generate(model, [ids], config)[0][4])
    with torch.inference_mode():
        expected = beam_search(Decoder(model), torch.tensor([ids]), None, config)[0]
    assert expected[-1] == config.eos_id and len(expected) < 25  # the best beam ended at EOS
    events, finished = [], threading.Event()

    def emit(event):
        events.append(event)
        if event.finish_reason:
            finished.set()

    scheduler = Scheduler(model, TOKENIZER, max_batch=2)
    scheduler.start()
    try:
        scheduler.submit(Request([ids], config, emit))
        assert finished.wait(60)
    finally:
        scheduler.stop(30)
    assert [event.token for event in events] == expected  # EOS counts, as the batch counts it
    assert events[-1].finish_reason == "stop" and events[-1].text == ""
    assert "".join(event.text for event in events) == TOKENIZER.decode(expected[:-1])


def test_a_sequence_that_could_never_fit_the_cache_is_refused_at_once():
    scheduler = Scheduler(tiny_model(context=32), TOKENIZER, max_batch=2)
    config = GenerationConfig(max_new_tokens=30, strategy="greedy")
    with pytest.raises(ContextLengthError, match="do not fit the model's context of 32"):
        scheduler.submit(Request([TOKENIZER.encode("ROMEO:")], config, emit=print))
