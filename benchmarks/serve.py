"""Serving under load: one client against N concurrent clients of `gptlab serve`, on 127.0.0.1.

The benchmark writes a run directory with random weights of --preset's shape and GPT-2's
tokenizer, starts `gptlab serve` on it in a process of its own, and drives it with a bounded
client of its own: C threads, each sending streamed completions one after another (a closed
loop, so at most C requests are in flight). Every request has a prompt of --prompt-len random
token ids and asks for --max-tokens new tokens, sampled at temperature 1.

The same server answers both rows, 1 client and N clients: its batch always has N rows, so
the rows differ only in how many of them hold requests. A continuous-batching server should
turn N clients into close to N times the tokens per second of one, each client's tokens
coming little slower than alone.

Columns: generated tokens/s over the whole row (all clients together), its ratio to one
client's, p50 and p99 of the time to first token (TTFT) and of the time per output token
after the first (TPOT, a request's mean), and the requests that failed. Then the server's
resident memory (RSS, from /proc) every 100 requests of the N-client row: it should stay flat.

    uv run python benchmarks/serve.py --quick     # CPU: a small model, 8 clients, 500 requests
    PYTHONPATH=src python3 benchmarks/serve.py --device cuda --compile   # gpt2, 32 clients
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Outcome:
    """One request as the client saw it."""

    tokens: int = 0
    ttft: float | None = None  # seconds to the first token
    tpot: float | None = None  # seconds per output token after the first
    error: str | None = None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--device", default="auto", help="auto, cpu or cuda (default auto)")
    add("--preset", default=None, help="model shape (default gpt2; --quick gpt2-mini)")
    add("--clients", type=int, help="concurrent clients of the loaded row (32 on a GPU, 8 on CPU)")
    add("--requests", type=int, help="requests of the loaded row (default 256; --quick 500)")
    add("--single-requests", type=int, help="requests of the 1-client row (default 16; --quick 8)")
    add("--prompt-len", type=int, help="prompt tokens (default 128; --quick 16)")
    add("--max-tokens", type=int, help="new tokens per request (default 128; --quick 16)")
    add("--compile", action="store_true", help="serve with a compiled decode step (CUDA graphs)")
    add(
        "--warmup",
        type=int,
        help="requests of N clients before measuring (default: 8 waves with --compile, so that "
        "every shape of the decode step is compiled before the clock starts; 1 without)",
    )
    add("--quick", action="store_true", help="CPU-sized: a small model, short requests")
    args = parser.parse_args()
    quick = args.quick
    args.preset = args.preset or ("gpt2-mini" if quick else "gpt2")
    args.requests = args.requests or (500 if quick else 256)
    args.single_requests = args.single_requests or (8 if quick else 16)
    args.prompt_len = args.prompt_len or (16 if quick else 128)
    args.max_tokens = args.max_tokens or (16 if quick else 128)
    args.warmup_waves = 8 if args.compile else 1
    return args


def write_run(directory: Path, preset: str) -> Path:
    """A run directory with random weights of `preset`'s shape and GPT-2's tokenizer."""
    import torch

    from gptlab.config import GPTConfig
    from gptlab.models.gpt import GPT
    from gptlab.runs import write_run_config
    from gptlab.tokenizers import GPT2Tokenizer
    from gptlab.training.checkpoint import MODEL_FILE, TOKENIZER_DIR, save_weights

    torch.manual_seed(0)
    config = GPTConfig.from_preset(preset, dropout=0.0)
    run = directory / "bench"  # the name the server serves it under
    run.mkdir(parents=True)
    save_weights(GPT(config), run / MODEL_FILE)
    GPT2Tokenizer.from_pretrained("gpt2").save(run / TOKENIZER_DIR)
    write_run_config(run, config, train={}, data={})
    return run


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(run: Path, args, clients: int) -> tuple[subprocess.Popen, int]:
    """`gptlab serve` on a free port of 127.0.0.1, once it answers /health."""
    port = free_port()
    command = [sys.executable, "-m", "gptlab", "serve", str(run), "--port", str(port)]
    command += ["--device", args.device, "--max-batch", str(clients), "--max-queue", "4096"]
    command += ["--compile"] if args.compile else []
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server ended: {server.stderr.read()}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return server, port
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("the server did not start within 10 minutes")


def one_request(connection: http.client.HTTPConnection, body: dict) -> Outcome:
    """Send one streamed completion; time its first token and the tokens after it.

    The client is the standard library's (http.client reads the chunked stream line by line),
    so the benchmark needs nothing the server does not.
    """
    outcome = Outcome()
    start = time.perf_counter()
    first = None
    try:
        connection.request(
            "POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        if response.status != 200:
            return Outcome(error=f"HTTP {response.status}: {response.read()[:200]!r}")
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                return Outcome(error=chunk["error"]["message"])
            if chunk.get("usage"):
                outcome.tokens = chunk["usage"]["completion_tokens"]
            elif first is None:
                first = time.perf_counter()
    except Exception as error:  # a benchmark counts failures rather than stopping at one
        connection.close()  # the next request opens a fresh connection
        return Outcome(error=f"{type(error).__name__}: {error}")
    end = time.perf_counter()
    if first is not None:
        outcome.ttft = first - start
        if outcome.tokens > 1:
            outcome.tpot = (end - first) / (outcome.tokens - 1)
    return outcome


def load(port: int, clients: int, requests: int, args, server_pid: int) -> dict:
    """`requests` requests from `clients` threads; the outcomes, wall time and RSS samples."""
    rng = random.Random(0)
    bodies = [
        {
            "model": "bench",
            "prompt": [rng.randrange(50000) for _ in range(args.prompt_len)],
            "max_tokens": args.max_tokens,
            "temperature": 1.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        for _ in range(requests)
    ]
    outcomes: list[Outcome] = []
    rss: list[float] = []
    lock = threading.Lock()
    next_index = iter(range(requests))

    def client_loop():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                connection.close()
                return
            outcome = one_request(connection, bodies[index])
            with lock:
                outcomes.append(outcome)
                if len(outcomes) % 100 == 0:
                    rss.append(resident_mib(server_pid))

    start = time.perf_counter()
    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"outcomes": outcomes, "seconds": time.perf_counter() - start, "rss": rss}


def resident_mib(pid: int) -> float:
    """A process's resident memory in MiB (Linux's /proc; NaN elsewhere)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(label: str, result: dict, baseline: float | None) -> tuple[str, float]:
    outcomes = result["outcomes"]
    ok = [o for o in outcomes if o.error is None]
    rate = sum(o.tokens for o in ok) / result["seconds"]
    ttft = [o.ttft for o in ok if o.ttft is not None]
    tpot = [o.tpot for o in ok if o.tpot is not None]
    ratio = f"{rate / baseline:.1f}x" if baseline else "1.0x"
    cells = [
        label,
        f"{len(outcomes)}",
        f"{rate:,.0f}",
        ratio,
        f"{1000 * percentile(ttft, 0.5):.0f}",
        f"{1000 * percentile(ttft, 0.99):.0f}",
        f"{1000 * percentile(tpot, 0.5):.1f}",
        f"{1000 * percentile(tpot, 0.99):.1f}",
        f"{len(outcomes) - len(ok)}",
    ]
    return "| " + " | ".join(cells) + " |", rate


def main() -> None:
    args = parse_args()
    import torch

    from gptlab.device import resolve_device

    device = resolve_device(args.device)
    args.device = str(device)
    clients = args.clients or (32 if device.type == "cuda" else 8)
    with tempfile.TemporaryDirectory() as scratch:
        run = write_run(Path(scratch), args.preset)
        server, port = start_server(run, args, clients)
        try:
            # Warm-up (and, with --compile, the compilation of each cache size's step)
            load(port, clients, args.warmup or clients * args.warmup_waves, args, server.pid)
            single = load(port, 1, args.single_requests, args, server.pid)
            loaded = load(port, clients, args.requests, args, server.pid)
        finally:
            server.terminate()
            server.wait(60)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"gptlab serve, torch {torch.__version__}, {device} ({gpu or 'cpu'}, "
        f"{os.cpu_count()} cores); {args.preset} random weights, prompt {args.prompt_len} tokens, "
        f"{args.max_tokens} new tokens, temperature 1, batch {clients} rows"
        f"{', compiled' if args.compile else ''}\n"
    )
    print(
        "| clients | requests | gen tok/s | ratio | TTFT p50 ms | TTFT p99 ms | TPOT p50 ms "
        "| TPOT p99 ms | errors |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    line, base_rate = summary("1", single, None)
    print(line)
    print(summary(str(clients), loaded, base_rate)[0])
    rss = ", ".join(f"{value:.0f}" for value in loaded["rss"])
    print(f"\nserver RSS (MiB) every 100 requests of the {clients}-client row: {rss}")
    errors = [o.error for o in loaded["outcomes"] + single["outcomes"] if o.error]
    if errors:
        print(f"first error: {errors[0]}")


if __name__ == "__main__":
    main()
