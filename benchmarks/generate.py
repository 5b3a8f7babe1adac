"""Decode speed: gptlab's `generate` against transformers' `GPT2LMHeadModel.generate`.

Both models hold the same random weights (a preset's shape, GPT-2 small by default), decode
greedily the same prompts for exactly the same number of new tokens, and are timed in
alternation within each repetition; the table gives medians. Three kinds of rows:

- single: batch 1, a prompt of --prompt-len tokens, --new-tokens new tokens;
- batched: --batched-size prompts of mixed lengths (left-padded), the same number of new tokens;
- positions: batch 1, decode speed after prompts of 100, 500 and 1000 tokens. The KV cache
  keeps a step's work to one token's (no recomputing of the prefix): only the cache read grows
  with the position. With --compile, one static cache sized for the last position serves all
  three (one compiled graph), so gptlab's step is the same work at every position.

"decode tok/s" leaves the prefill out (from the first new token to the last); "e2e tok/s" is
new tokens over the whole call. Decoding reads every weight once per step, and each row's KV
cache up to its position, so a step can go no faster than those bytes over the memory
bandwidth, measured as a large tensor copy (2 x bytes / time). "% BW" is the share of that
limit a run reaches.

    uv run python benchmarks/generate.py --device cpu --batched-new-tokens 64   # CPU, float32
    PYTHONPATH=src python3 benchmarks/generate.py --device cuda --dtype bfloat16 --compile
"""

from __future__ import annotations

import argparse
import functools
import platform
import statistics
import time
from dataclasses import dataclass

COLUMNS = [  # (header, width)
    ("row", 40),
    ("gptlab decode tok/s", 19),
    ("transformers decode tok/s", 25),
    ("ratio", 6),
    ("gptlab e2e tok/s", 16),
    ("transformers e2e tok/s", 22),
    ("ratio", 6),
    ("gptlab % BW", 11),
    ("transformers % BW", 17),
]


@dataclass
class Row:
    label: str
    prompts: list[list[int]]
    new_tokens: int
    decoder: object  # a gptlab Decoder, kept across repetitions (its cache and compiled step)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--device", default="auto", help="auto, cpu or cuda (default auto)")
    add("--dtype", default="auto", help="float32, bfloat16, or auto: bf16 on CUDA (default)")
    add("--preset", default="gpt2", help="model shape (default gpt2, 124M parameters)")
    add("--batch-size", type=int, default=1, help="prompts of the single row (default 1)")
    add("--batched-size", type=int, default=16, help="prompts of the batched row (default 16)")
    add("--prompt-len", type=int, default=32, help="prompt tokens (default 32)")
    add("--new-tokens", type=int, default=256, help="new tokens per prompt (default 256)")
    add("--batched-new-tokens", type=int, help="new tokens in the batched row (default: same)")
    add("--positions", default="100,500,1000", help="prompt lengths of the positions rows")
    add("--position-tokens", type=int, default=24, help="new tokens at each position (default 24)")
    add("--rows", default="single,batched,positions", help="rows to run, comma-separated")
    add("--reps", type=int, default=3, help="timed repetitions of each row (default 3)")
    add("--compile", action="store_true", help="gptlab: compiled decode step, CUDA graphs")
    add("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    add("--quick", action="store_true", help="a smoke run: 1 repetition, few tokens")
    args = parser.parse_args()
    if args.quick:
        args.reps, args.new_tokens, args.position_tokens = 1, 16, 8
        args.batched_new_tokens = min(args.batched_new_tokens or 8, 8)
    args.batched_new_tokens = args.batched_new_tokens or args.new_tokens
    return args


def main() -> None:
    args = parse_args()
    import torch
    import transformers

    from gptlab.config import GPTConfig
    from gptlab.device import resolve_device, resolve_dtype
    from gptlab.models.gpt import GPT
    from gptlab.pretrained import config_to_hf, state_dict_from_hf

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    torch.manual_seed(0)
    config = GPTConfig.from_preset(args.preset, dropout=0.0)
    hf_model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config_to_hf(config)))
    model = GPT(config)
    model.load_state_dict(state_dict_from_hf(hf_model.state_dict()))
    hf_model.to(device, dtype).eval()
    model.to(device, dtype).eval()

    bandwidth = copy_bandwidth(device)
    # Every weight is read once a step, except wpe, of which a step reads one row.
    weight_bytes = (model.num_params() - model.wpe.weight.numel()) * dtype.itemsize
    # Keys and values of one position, in every layer.
    kv_bytes_per_position = 2 * config.n_layer * config.n_embd * dtype.itemsize

    print(
        f"gptlab vs transformers {transformers.__version__}, torch {torch.__version__}, "
        f"{describe(device)}, {torch.get_num_threads()} threads; {args.preset} "
        f"({model.num_params() / 1e6:.0f}M parameters, random), {str(dtype)[6:]}, "
        f"gptlab compile {'on' if args.compile else 'off'}; copy bandwidth "
        f"{bandwidth / 1e9:.1f} GB/s, weights read per step {weight_bytes / 1e6:.0f} MB; "
        f"medians of {args.reps} reps",
        flush=True,
    )
    print_header()
    over_limit = False
    for row in make_rows(args, model, config.context_length):
        ours, theirs, row = measure(row, model, hf_model, device, args.reps)
        # The mean position of each prompt while it decodes: the KV cache a step reads.
        positions = [len(p) + row.new_tokens / 2 for p in row.prompts]
        bytes_per_step = weight_bytes + kv_bytes_per_position * sum(positions)
        shares = [bytes_per_step * tps[0] / len(positions) / bandwidth for tps in (ours, theirs)]
        over_limit |= max(shares) > 1
        print_row(row.label, ours, theirs, shares)
    if over_limit and device.type == "cpu":
        print(
            "Shares above 100% on a CPU: a copy also reads each destination line before writing "
            "it (write-allocate), so 2 x bytes / time understates what memory can deliver to a "
            "read-only stream, and a large last-level cache may keep part of the weights."
        )


def make_rows(args, model, context_length: int) -> list[Row]:
    import torch

    from gptlab.generation import Decoder

    generator = torch.Generator().manual_seed(1)

    def prompt(n: int) -> list[int]:
        return torch.randint(0, model.config.vocab_size, (n,), generator=generator).tolist()

    wanted = args.rows.split(",")
    rows = []
    if "single" in wanted:
        label = f"batch {args.batch_size}, prompt {args.prompt_len}, {args.new_tokens} new"
        prompts = [prompt(args.prompt_len) for _ in range(args.batch_size)]
        rows.append(Row(label, prompts, args.new_tokens, Decoder(model, compile=args.compile)))
    if "batched" in wanted:
        lengths = torch.linspace(args.prompt_len // 4, args.prompt_len, args.batched_size)
        prompts = [prompt(n) for n in lengths.round().int().tolist()]
        n = args.batched_new_tokens
        label = (
            f"batch {args.batched_size}, prompts {args.prompt_len // 4}..{args.prompt_len}, {n} new"
        )
        rows.append(Row(label, prompts, n, Decoder(model, compile=args.compile)))
    if "positions" in wanted:
        n = args.position_tokens
        positions = [min(int(p), context_length - n) for p in args.positions.split(",")]
        # Compiled, one static cache serves every position (one graph, the same work at each
        # position); eager, each call's cache is sized to its prompt, as transformers' grows.
        cache_length = max(positions) + n if args.compile else None
        shared = Decoder(model, compile=args.compile, cache_length=cache_length)
        for p in positions:
            rows.append(Row(f"batch 1, at position {p}, {n} new", [prompt(p)], n, shared))
    return rows


def measure(row: Row, model, hf_model, device, reps: int):
    """Decode and end-to-end tokens/s of gptlab and transformers on one row, interleaved."""
    from gptlab.generation import Decoder

    theirs = functools.partial(time_transformers, hf_model, row.prompts, row.new_tokens, device)
    try:
        *_, ours = time_gptlab(row)  # warm-up: compiles, records CUDA graphs, fills caches
    except Exception as error:  # report it and time eager decoding rather than lose the run
        if not row.decoder.compile:
            raise
        print(f"  {row.label}: compiled decoding failed ({type(error).__name__}: {error})")
        decoder = Decoder(model, cache_length=row.decoder.cache_length)
        row = Row(row.label + " (eager)", row.prompts, row.new_tokens, decoder)
        *_, ours = time_gptlab(row)
    *_, theirs_tokens = theirs()
    if ours != theirs_tokens:  # rounding (bf16 above all) may break a near-tie
        same = sum(a == b for x, y in zip(ours, theirs_tokens) for a, b in zip(x, y))
        total = sum(map(len, ours))
        print(f"  note: {same} of {total} greedy tokens agree with transformers' in this row")
    times = {"ours": [], "theirs": []}
    for _ in range(reps):
        times["ours"].append(time_gptlab(row))
        times["theirs"].append(theirs())
    B, N = len(row.prompts), row.new_tokens
    speeds = []
    for who in ("ours", "theirs"):
        decode_s = statistics.median(t[0] for t in times[who])
        total_s = statistics.median(t[1] for t in times[who])
        speeds.append((B * (N - 1) / decode_s, B * N / total_s))
    return speeds[0], speeds[1], row


def time_gptlab(row: Row) -> tuple[float, float, list[list[int]]]:
    """(seconds from the first new token to the last, seconds for the whole call, the new
    tokens), gptlab.

    This is `generate` without EOS (exactly new_tokens tokens), with a clock at the first token.
    """
    import torch

    from gptlab.generation import GenerationConfig
    from gptlab.generation.loop import batch_prompts, decode_tokens

    decoder = row.decoder
    config = GenerationConfig(strategy="greedy", max_new_tokens=row.new_tokens)
    sync = synchronizer(decoder.device)
    start = time.perf_counter()
    with torch.inference_mode():
        ids, mask = batch_prompts(decoder, row.prompts, config)
        steps = []
        for token in decode_tokens(decoder, ids, mask, config):
            steps.append(token)
            if len(steps) == 1:
                sync()
                first = time.perf_counter()
        tokens = torch.stack(steps, dim=1).tolist()  # on the host: waits for the last step
    end = time.perf_counter()
    return end - first, end - start, tokens


def time_transformers(hf_model, prompts, new_tokens, device) -> tuple[float, float, list]:
    """(seconds from the first new token to the last, seconds for the whole call, the new
    tokens), transformers.

    A logits processor clocks each step (transformers waits for the device at every step anyway,
    to check whether generation is done); the first clock is right after the prefill.
    """
    import torch
    from transformers import LogitsProcessorList

    ids, mask = left_padded(prompts, device)
    sync = synchronizer(device)
    clocks = []

    def clock(input_ids, scores):
        sync()
        clocks.append(time.perf_counter())
        return scores

    start = time.perf_counter()
    with torch.inference_mode():
        out = hf_generate(hf_model, ids, mask, new_tokens, LogitsProcessorList([clock]))
        tokens = out[:, ids.shape[1] :].tolist()
    end = time.perf_counter()
    assert out.shape[1] - ids.shape[1] == new_tokens and len(clocks) == new_tokens
    return end - clocks[0], end - start, tokens


def hf_generate(hf_model, ids, mask, new_tokens, logits_processor=None):
    """transformers' greedy decoding of exactly `new_tokens` tokens (EOS is not allowed before)."""
    return hf_model.generate(
        ids,
        attention_mask=mask,
        do_sample=False,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        pad_token_id=hf_model.config.eos_token_id,
        logits_processor=logits_processor,
    )


def left_padded(prompts, device):
    from gptlab.generation import left_pad

    ids, mask = left_pad(prompts, 0, device=device)
    return ids, mask.long()


def synchronizer(device):
    import torch

    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def copy_bandwidth(device, megabytes: int = 512, reps: int = 5) -> float:
    """Memory bandwidth in bytes/s: the best of a few copies of a large tensor (read + write)."""
    import torch

    src = torch.ones(megabytes * 2**20 // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    sync = synchronizer(device)
    best = float("inf")
    for _ in range(reps + 1):  # the first copy also faults the pages of dst in
        sync()
        start = time.perf_counter()
        dst.copy_(src)
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * src.numel() * src.element_size() / best


def describe(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()})"


def print_header() -> None:
    (first, first_width), *rest = COLUMNS
    names = [f"{first:<{first_width}}"] + [f"{name:>{width}}" for name, width in rest]
    print("| " + " | ".join(names) + " |")
    print("|" + "|".join("-" * (width + 2) for _, width in COLUMNS) + "|", flush=True)


def print_row(label: str, ours, theirs, shares) -> None:
    cells = [
        label,
        f"{ours[0]:.1f}",
        f"{theirs[0]:.1f}",
        f"{ours[0] / theirs[0]:.2f}x",
        f"{ours[1]:.1f}",
        f"{theirs[1]:.1f}",
        f"{ours[1] / theirs[1]:.2f}x",
        f"{100 * shares[0]:.0f}%",
        f"{100 * shares[1]:.0f}%",
    ]
    aligned = [f"{cells[0]:<{COLUMNS[0][1]}}"]
    aligned += [f"{cell:>{width}}" for cell, (_, width) in zip(cells[1:], COLUMNS[1:])]
    print("| " + " | ".join(aligned) + " |", flush=True)


if __name__ == "__main__":
    main()
