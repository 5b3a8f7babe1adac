"""Beam search through `gptlab serve`: a beam request against a greedy one for the same prompt,
and what a running beam search costs a greedy request beside it.

The benchmark writes the random-weight run of benchmarks/serve.py (--preset's shape, GPT-2's
tokenizer), starts `gptlab serve` on it, and sends one prompt of --prompt-len token ids asking
for --max-tokens new tokens: greedy (temperature 0), beam search of --beams beams, and the same
search answering n = --beams (all its hypotheses), each alone, the median of --repeats. Beside
each, the library's own `generate` of the same request in this process (no HTTP, no
scheduler), timed in turn with the server's: their difference is what serving adds. The last row is a greedy request sent while
a beam search runs on the server: the batch steps between the search's steps, so its tokens
come slower than alone but keep coming.

    uv run python benchmarks/serve_beam.py                      # CPU: gpt2-mini, 64 new tokens
    PYTHONPATH=src python3 benchmarks/serve_beam.py --device cuda --preset gpt2 --max-tokens 128
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

from serve import start_server, write_run


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--device", default="auto", help="auto, cpu or cuda (default auto)")
    add("--preset", default="gpt2-mini", help="model shape (default gpt2-mini)")
    add("--beams", type=int, default=4, help="num_beams of the beam requests (default 4)")
    add("--prompt-len", type=int, default=16, help="prompt tokens (default 16)")
    add("--max-tokens", type=int, default=64, help="new tokens per request (default 64)")
    add("--repeats", type=int, default=5, help="times each request is timed (default 5)")
    args = parser.parse_args()
    args.compile = False  # start_server's flag: a compiled step would time its compilation
    return args


def ask(port: int, body: dict) -> tuple[float, int]:
    """Send one completion (not streamed); its seconds and its completion tokens."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    start = time.perf_counter()
    connection.request(
        "POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"}
    )
    response = connection.getresponse()
    answer = json.loads(response.read())
    seconds = time.perf_counter() - start
    connection.close()
    if response.status != 200:
        raise SystemExit(f"HTTP {response.status}: {answer}")
    return seconds, answer["usage"]["completion_tokens"]


def library(model, prompt: list[int], config, decoder) -> float:
    """The seconds of `generate` on the same request, in this process.

    It runs in a thread of its own, as the server's scheduler runs the model: on a CPU shared
    with other work, torch's threads behave otherwise in the main thread (on 2 busy cores, a
    forward pass there measured 2 to 10 times slower than in another thread), which would
    compare the threads rather than the work.
    """
    from gptlab.generation import generate

    seconds = []

    def run():
        start = time.perf_counter()
        generate(model, [prompt], config, decoder=decoder)
        seconds.append(time.perf_counter() - start)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    return seconds[0]


def main() -> None:
    args = parse_args()
    import dataclasses

    import torch

    from gptlab.device import resolve_device
    from gptlab.generation import Decoder, GenerationConfig
    from gptlab.pretrained import load_model

    device = resolve_device(args.device)
    args.device = str(device)
    rng = random.Random(0)
    prompt = [rng.randrange(50000) for _ in range(args.prompt_len)]
    base = {"model": "bench", "prompt": prompt, "max_tokens": args.max_tokens, "temperature": 0}
    beam = {**base, "num_beams": args.beams}
    del beam["temperature"]  # beam search samples nothing: no temperature to give
    requests = {
        "greedy": base,
        f"beam, num_beams {args.beams}": beam,
        f"beam, num_beams {args.beams}, n {args.beams}": {**beam, "n": args.beams},
    }
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        run = write_run(Path(scratch), args.preset)
        model, tokenizer, _ = load_model(run, device, task="lm")
        greedy = GenerationConfig(
            max_new_tokens=args.max_tokens, strategy="greedy", eos_id=tokenizer.eos_id
        )
        beam_config = dataclasses.replace(greedy, strategy="beam", num_beams=args.beams)
        configs = [greedy, beam_config, beam_config]  # the n best come out of the same search
        decoder = Decoder(model)  # one cache for every call, as the server keeps its own
        server, port = start_server(run, args, clients=max(8, args.beams))
        try:
            # Round robin, warm-up first: on a shared machine, every row sees the same load.
            times = {label: ([], []) for label in requests}
            for repeat in range(args.repeats + 1):
                for (label, body), config in zip(requests.items(), configs):
                    served, alone = ask(port, body), library(model, prompt, config, decoder)
                    if repeat:
                        times[label][0].append(served)
                        times[label][1].append(alone)
            for label, (served, alone) in times.items():
                seconds = statistics.median(t for t, _ in served)
                rows.append((label, served[0][1], seconds, statistics.median(alone)))
            # A greedy request while a search twice as long runs beside it.
            search = threading.Thread(
                target=ask, args=(port, {**beam, "max_tokens": 2 * args.max_tokens})
            )
            search.start()
            time.sleep(0.2)
            seconds, tokens = ask(port, base)
            search.join()
            rows.append((f"greedy, beside a num_beams {args.beams} search", tokens, seconds, None))
        finally:
            server.terminate()
            server.wait(60)
    cpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"gptlab serve, torch {torch.__version__}, {device} ({cpu or 'cpu'}, {os.cpu_count()} "
        f"cores); {args.preset} random weights, prompt {args.prompt_len} tokens, "
        f"max_tokens {args.max_tokens}, median of {args.repeats}\n"
    )
    print(
        "| request | completion tokens | server ms | vs greedy | generate() ms "
        "| server / generate() |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    greedy_seconds = rows[0][2]
    for label, tokens, seconds, alone in rows:
        library_cells = f"{1000 * alone:.0f} | {seconds / alone:.2f}x" if alone else "- | -"
        print(
            f"| {label} | {tokens} | {1000 * seconds:.0f} | {seconds / greedy_seconds:.1f}x "
            f"| {library_cells} |"
        )


if __name__ == "__main__":
    main()
