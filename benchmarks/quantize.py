"""Quantization: what each method saves on disk and what it does to decoding speed.

A GPT of a preset's shape (GPT-2 small by default) with random weights, in float32, against
each of gptlab's methods and, as the peer, PyTorch's `torch.ao.quantization.quantize_dynamic`
(int8 weights, activations quantized per batch at run time, fbgemm's kernels on x86):

- size: model.safetensors of the float model and of each quantized run, as `gptlab quantize`
  writes it (the peer's packed weights as `torch.save` writes them);
- cpu-decode: greedy decoding at batch 1 through `gptlab.generation`, every model decoding
  the same prompt for the same number of new tokens, in alternation within each repetition;
  medians of --reps. "decode tok/s" leaves the prefill out. int8-dynamic runs twice, through
  fbgemm (its fast CPU path, the default) and through the readable path (`torch._int_mm`), the
  same model with `gptlab.quantization.int8.FAST_CPU` switched off while it decodes.

- quality (with --run RUN, a trained language-model run): the validation perplexity of the
  run's own split under each method and the peer, its increase over float32, and the share of
  greedy tokens equal to float32's over fixed prompts (8 prompts of 16 validation tokens, 32
  new tokens each).

Parts still to come (issue 13): gpu-decode (bf16, compiled, batch 1 and 16, % of memory
bandwidth), torchao's kernels as methods.

    PYTHONPATH=src python3 benchmarks/quantize.py --only size,cpu-decode --report-json q.json
    PYTHONPATH=src python3 benchmarks/quantize.py --quick        # a smoke run
    uv run python benchmarks/quantize.py --only quality --run runs/gpt2-mini
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

from generate import Row, time_gptlab

PARTS = ("size", "cpu-decode", "quality")
FLOAT = "float32"
PEER = "torch.ao quantize_dynamic"
CPU_METHODS = ("int8-dynamic", "int8-weight")  # int4-weight is a GPU method (see int4.py)
READABLE = " (readable)"  # the suffix of a row that decodes with FAST_CPU off


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--preset", default="gpt2", help="model shape (default gpt2, 124M parameters)")
    add("--only", default=",".join(PARTS), help=f"comma-separated parts: {', '.join(PARTS)}")
    add("--methods", default=",".join(CPU_METHODS), help="gptlab methods to decode with")
    add("--size-methods", default="int8-dynamic,int8-weight,int4-weight", help="methods to size")
    add("--group-size", type=int, default=128, help="int4-weight group size (default 128)")
    add("--prompt-len", type=int, default=32, help="prompt tokens (default 32)")
    add("--new-tokens", type=int, default=64, help="new tokens (default 64)")
    add("--reps", type=int, default=3, help="timed repetitions (default 3)")
    add("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    add("--no-peer", action="store_true", help="leave torch.ao's quantize_dynamic out")
    add("--run", help="quality: a trained language-model run directory (e.g. runs/gpt2-mini)")
    add(
        "--quality-methods",
        default="int8-dynamic,int8-weight,int4-weight",
        help="quality: the methods to evaluate",
    )
    add("--quick", action="store_true", help="a smoke run: 1 repetition, 8 new tokens")
    add("--report-json", help="write the results here as JSON")
    args = parser.parse_args()
    if args.quick:
        args.reps, args.new_tokens = 1, 8
    if "quality" in args.only.split(",") and not args.run:
        if args.only != ",".join(PARTS):
            parser.error("quality needs --run RUN, a trained language-model run directory")
        args.only = "size,cpu-decode"  # the default parts: quality only when a run is given
    return args


def main() -> None:
    args = parse_args()
    import torch

    from gptlab.config import GPTConfig
    from gptlab.models.gpt import GPT

    if args.threads:
        torch.set_num_threads(args.threads)
    parts = set(args.only.split(","))
    report = {"preset": args.preset, "threads": torch.get_num_threads(), "torch": torch.__version__}
    if parts & {"size", "cpu-decode"}:
        torch.manual_seed(0)
        model = GPT(GPTConfig.from_preset(args.preset, dropout=0.0)).eval()
        print(
            f"{args.preset} ({model.num_params() / 1e6:.0f}M parameters, random), float32, torch "
            f"{torch.__version__}, {torch.get_num_threads()} threads; medians of {args.reps} reps",
            flush=True,
        )
    if "size" in parts:
        report["size"] = measure_sizes(model, args)
    if "cpu-decode" in parts:
        report["cpu-decode"] = measure_decode(model, args)
    if "quality" in parts:
        report["quality"] = measure_quality(args)
    if args.report_json:
        Path(args.report_json).write_text(json.dumps(report, indent=2) + "\n")


def quantized(model, method: str, group_size: int):
    from gptlab.quantization import QuantConfig, quantize_model

    return quantize_model(copy.deepcopy(model), QuantConfig(method, group_size=group_size))


def peer(model):
    """PyTorch's own dynamic int8: every nn.Linear (the tied head too) to fbgemm's."""
    import torch
    from torch import nn

    with warnings.catch_warnings():  # torch.ao.quantization's notice that torchao replaces it
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(model), {nn.Linear}, torch.qint8
        )


def measure_sizes(model, args) -> dict:
    import torch

    from gptlab.training.checkpoint import save_weights

    sizes = {}
    with tempfile.TemporaryDirectory() as folder:
        for name in (FLOAT, *args.size_methods.split(",")):
            path = Path(folder) / f"{name}.safetensors"
            save_weights(model if name == FLOAT else quantized(model, name, args.group_size), path)
            sizes[name] = path.stat().st_size
    if not args.no_peer:
        buffer = io.BytesIO()
        torch.save(peer(model).state_dict(), buffer)
        sizes[PEER] = buffer.tell()
    print("\n| model | size on disk (MB) | % of float32 |\n|---|---:|---:|")
    for name, size in sizes.items():
        print(f"| {name} | {size / 1e6:,.1f} | {100 * size / sizes[FLOAT]:.1f}% |")
    return sizes


def measure_decode(model, args) -> dict:
    import torch

    from gptlab.generation import Decoder

    models = {FLOAT: model}
    for method in args.methods.split(","):
        models[method] = quantized(model, method, args.group_size)
        if method == "int8-dynamic":
            models[method + READABLE] = copy.deepcopy(models[method])
    if not args.no_peer:
        models[PEER] = peer(model)
    prompt = torch.randint(0, model.config.vocab_size, (args.prompt_len,)).tolist()
    rows = {name: Row(name, [prompt], args.new_tokens, Decoder(m)) for name, m in models.items()}
    tokens = {name: timed(row)[2] for name, row in rows.items()}  # warm-up
    times = {name: [] for name in rows}
    for _ in range(args.reps):
        for name, row in rows.items():  # in alternation: a slow moment hurts every model
            times[name].append(timed(row)[0])
    speeds = {name: (args.new_tokens - 1) / statistics.median(t) for name, t in times.items()}
    print(
        "\n| model | decode tok/s, batch 1 | x float32 | greedy tokens = float32's |"
        "\n|---|---:|---:|---:|"
    )
    for name, speed in speeds.items():
        same = sum(a == b for a, b in zip(tokens[name][0], tokens[FLOAT][0]))
        print(f"| {name} | {speed:.1f} | {speed / speeds[FLOAT]:.2f}x | {same}/{args.new_tokens} |")
    return {"tok/s": speeds, "runs_s": times, "measured_at": time.time()}


def timed(row):
    """`time_gptlab(row)`, through gptlab's readable int8 path where the row's name says so."""
    from gptlab.quantization import int8

    int8.FAST_CPU = not row.label.endswith(READABLE)
    try:
        return time_gptlab(row)
    finally:
        int8.FAST_CPU = True


def measure_quality(args) -> dict:
    """Validation perplexity and greedy agreement of a trained run under each method."""
    import numpy as np
    import torch

    from gptlab.data.text import TokenData, resolve_text
    from gptlab.evaluation import perplexity
    from gptlab.generation import GenerationConfig, generate
    from gptlab.pretrained import load_model

    model, tokenizer, info = load_model(args.run, task="lm")
    data = info["config"]["data"]
    val = TokenData.from_file(
        resolve_text(data["data"]), tokenizer, data.get("val_fraction", 0.1)
    ).val
    offsets = np.linspace(0, len(val) - 17, 8).astype(int)
    prompts = [[int(t) for t in val[o : o + 16]] for o in offsets]
    greedy = GenerationConfig(max_new_tokens=32, strategy="greedy", eos_id=None)
    models = {FLOAT: model}
    for method in args.quality_methods.split(","):
        models[method] = quantized(model, method, args.group_size)
    if not args.no_peer:
        models[PEER] = peer(model)
    results, reference = {}, None
    print(f"\nquality of {args.run} on {data['data']}'s validation split ({len(val):,} tokens):")
    for name, m in models.items():
        with torch.no_grad():
            loss = perplexity(m, val, model.config.context_length)
            tokens = generate(m, prompts, greedy)
        reference = reference or tokens
        same = sum(a == b for mine, ref in zip(tokens, reference) for a, b in zip(mine, ref))
        results[name] = {"perplexity": loss["perplexity"], "greedy_same": same / (8 * 32)}
    base = results[FLOAT]["perplexity"]
    print("\n| model | validation perplexity | increase | greedy tokens = float32's |")
    print("|---|---:|---:|---:|")
    for name, r in results.items():
        change = f"{100 * (r['perplexity'] / base - 1):+.2f}%" if name != FLOAT else ""
        print(f"| {name} | {r['perplexity']:.3f} | {change} | {r['greedy_same']:.1%} |")
    return results


if __name__ == "__main__":
    main()
