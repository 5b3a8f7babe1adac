"""Quantization: what each method saves on disk and in memory, and what it does to decoding
speed and to quality.

A GPT of a preset's shape with random weights against each of gptlab's methods and, on the
CPU, the peer: PyTorch's `torch.ao.quantization.quantize_dynamic` (int8 weights, activations
quantized per batch at run time, fbgemm's kernels on x86). torchao is not a peer here: it is
not installed on the machines this ran on (and not a dependency).

- size (GPT-2 small shape by default): model.safetensors of the float model and of each
  quantized run, as `gptlab quantize` writes it (the peer's packed weights as `torch.save`
  writes them);
- cpu-decode (GPT-2 small shape, float32): greedy decoding at batch 1 through
  `gptlab.generation`, every model decoding the same prompt for the same number of new tokens,
  in alternation within each repetition; medians of --reps. "decode tok/s" leaves the prefill
  out. int8-dynamic runs twice, through fbgemm (its fast CPU path, the default) and through
  the readable path (`torch._int_mm`), the same model with `gptlab.quantization.int8.FAST_CPU`
  switched off while it decodes. Memory: the bytes of each model's tensors, and the peak
  resident memory (RSS, /proc/self/status VmHWM after a reset through /proc/self/clear_refs)
  of its first decode over the RSS before it: what decoding adds (fbgemm's packed weights,
  the KV cache, activations); Linux only.
- gpu-decode (gpt2-xl shape, 1.5B, bfloat16, one CUDA GPU): the decode step compiled as
  gptlab's generation compiles it (`Decoder(model, compile=True)`: CUDA graphs over a static
  KV cache), greedy, batch 1 and 16, for bf16 and int8-weight, int4-weight (tinygemm) and fp8
  (`torch._scaled_mm`, compute capability 8.9 or more); tokens/s, the ratio to bf16, the share
  of --peak-bandwidth reached (bytes of weights read a step x steps/s; the KV cache, under 1%
  of the bytes here, is left out), and the peak GPU memory of each (torch.cuda
  .max_memory_allocated: weights, KV cache, activations, CUDA graph pools). Every row gets a
  fresh compile, its warm-up time printed (not yet measured on an H200: split the part with
  --gpu-batches 1, then --gpu-batches 16, if one command must stay under 10 minutes).
- quality (with --run RUN, a trained language-model run): the validation perplexity of the
  run's own split under each method and the peer, its increase over float32, and the share of
  greedy tokens equal to float32's over fixed prompts (8 prompts of 16 validation tokens, 32
  new tokens each). int8-static calibrates on the training split (8 batches, as `gptlab
  quantize`); fp8 runs only on a GPU that has it (--device cuda).

    PYTHONPATH=src python3 benchmarks/quantize.py --only size,cpu-decode --report-json q.json
    PYTHONPATH=src python3 benchmarks/quantize.py --quick        # a smoke run
    PYTHONPATH=src python3 benchmarks/quantize.py --only gpu-decode     # gpt2-xl on one GPU
    uv run python benchmarks/quantize.py --only quality --run runs/gpt2-mini [--device cuda]
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

PARTS = ("size", "cpu-decode", "gpu-decode", "quality")
DEFAULT_PARTS = "size,cpu-decode"  # the parts that need neither a GPU nor a trained run
FLOAT = "float32"
BF16 = "bfloat16"
GPU_METHODS = ("int8-weight", "int4-weight", "fp8")
PERCENTILE = "int8-static-percentile"  # int8-static with the 99.99th-percentile observer
QUALITY_METHODS = ("int8-dynamic", "int8-static", PERCENTILE, "int8-weight", "int4-weight", "fp8")
MiB = 2**20
PEER = "torch.ao quantize_dynamic"
# int4-weight is a GPU method (see int4.py); int8-static runs the readable path (fbgemm's static
# op, quantized.linear_with_input_q_dq_qweight_dq_output_fp32, measured 17x slower than its
# dynamic one per layer on this CPU)
CPU_METHODS = ("int8-dynamic", "int8-static", "int8-weight")
READABLE = " (readable)"  # the suffix of a row that decodes with FAST_CPU off


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add(
        "--preset",
        help="model shape (default gpt2, 124M parameters; gpt2-xl, 1558M, for gpu-decode)",
    )
    add(
        "--only",
        default=DEFAULT_PARTS,
        help=f"comma-separated parts: {', '.join(PARTS)} (default {DEFAULT_PARTS}; quality "
        "too when --run is given)",
    )
    add("--methods", default=",".join(CPU_METHODS), help="gptlab methods to decode with")
    add(
        "--size-methods",
        default="int8-dynamic,int8-static,int8-weight,int4-weight",
        help="methods to size",
    )
    add(
        "--group-size",
        type=int,
        help="int4-weight group size (default: 128, or the largest of 128, 64, 32 that divides "
        "the model's width: 64 for gpt2-xl)",
    )
    add("--gpu-methods", default=",".join(GPU_METHODS), help="gpu-decode: methods beside bf16")
    add("--gpu-batches", default="1,16", help="gpu-decode: batch sizes (default 1,16)")
    add("--gpu-new-tokens", type=int, default=128, help="gpu-decode: new tokens (default 128)")
    add(
        "--peak-bandwidth",
        type=float,
        default=4.8,
        help="gpu-decode: the GPU's memory bandwidth in TB/s, for the %% column (H200: 4.8)",
    )
    add("--prompt-len", type=int, default=32, help="prompt tokens (default 32)")
    add("--new-tokens", type=int, default=64, help="new tokens (default 64)")
    add("--reps", type=int, default=3, help="timed repetitions (default 3)")
    add("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    add("--no-peer", action="store_true", help="leave torch.ao's quantize_dynamic out")
    add("--run", help="quality: a trained language-model run directory (e.g. runs/gpt2-mini)")
    add(
        "--quality-methods",
        default=",".join(QUALITY_METHODS),
        help="quality: the methods to evaluate (fp8 only with --device cuda)",
    )
    add("--device", default="cpu", help="quality: where to evaluate, cpu or cuda (default cpu)")
    add(
        "--quality-tokens",
        type=int,
        help="quality: evaluate on the first N tokens of the validation split (default: all)",
    )
    add("--quick", action="store_true", help="a smoke run: 1 repetition, 8 new tokens")
    add("--report-json", help="write the results here as JSON")
    args = parser.parse_args()
    if args.quick:
        args.reps, args.new_tokens, args.gpu_new_tokens = 1, 8, 16
    parts = args.only.split(",")
    if unknown := set(parts) - set(PARTS):
        parser.error(f"unknown parts {', '.join(sorted(unknown))}; known: {', '.join(PARTS)}")
    if args.run and args.only == DEFAULT_PARTS:
        args.only += ",quality"
    if "quality" in parts and not args.run:
        parser.error("quality needs --run RUN, a trained language-model run directory")
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
        preset = args.preset or "gpt2"
        torch.manual_seed(0)
        model = GPT(GPTConfig.from_preset(preset, dropout=0.0)).eval()
        print(
            f"{preset} ({model.num_params() / 1e6:.0f}M parameters, random), float32, torch "
            f"{torch.__version__}, {torch.get_num_threads()} threads; medians of {args.reps} reps",
            flush=True,
        )
    if "size" in parts:
        report["size"] = measure_sizes(model, args)
    if "cpu-decode" in parts:
        report["cpu-decode"] = measure_decode(model, args)
    if "gpu-decode" in parts:
        report["gpu-decode"] = measure_gpu_decode(args)
    if "quality" in parts:
        report["quality"] = measure_quality(args)
    if args.report_json:
        Path(args.report_json).write_text(json.dumps(report, indent=2) + "\n")


def quantized(model, method: str, group_size: int | None, calibration=None):
    """A quantized copy of `model`. int8-static calibrates on `calibration`, by default on
    random tokens (the speed and size parts' models are random too)."""
    import torch

    from gptlab.quantization import QuantConfig, quantize_model

    settings = {"group_size": group_size or default_group_size(model)}
    if method == PERCENTILE:
        method, settings["observer"] = "int8-static", "percentile"
    if method == "int8-static" and calibration is None:
        generator = torch.Generator().manual_seed(2)
        shape = (4, min(256, model.config.context_length))
        device = model.ln_f.weight.device
        calibration = [
            torch.randint(0, model.config.vocab_size, shape, generator=generator).to(device)
            for _ in range(2)
        ]
    return quantize_model(copy.deepcopy(model), QuantConfig(method, **settings), calibration)


def default_group_size(model) -> int:
    """128, or the largest of 64 and 32 that divides every layer's width (gpt2-xl: 1600)."""
    return next((g for g in (128, 64, 32) if model.config.n_embd % g == 0), 128)


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
    tokens, added = {}, {}
    for name, row in rows.items():  # warm-up, measuring the memory a first decode adds
        before = reset_peak_rss()
        tokens[name] = timed(row)[2]
        added[name] = peak_rss() - before if before is not None else None
    times = {name: [] for name in rows}
    for _ in range(args.reps):
        for name, row in rows.items():  # in alternation: a slow moment hurts every model
            times[name].append(timed(row)[0])
    speeds = {name: (args.new_tokens - 1) / statistics.median(t) for name, t in times.items()}
    held = {name: tensor_bytes(m) for name, m in models.items()}
    print(
        "\n| model | decode tok/s, batch 1 | x float32 | greedy tokens = float32's "
        "| tensors MiB | decode peak RSS added, MiB |\n|---|---:|---:|---:|---:|---:|"
    )
    for name, speed in speeds.items():
        same = sum(a == b for a, b in zip(tokens[name][0], tokens[FLOAT][0]))
        rss = "n/a" if added[name] is None else f"{added[name] / MiB:,.0f}"
        print(
            f"| {name} | {speed:.1f} | {speed / speeds[FLOAT]:.2f}x | {same}/{args.new_tokens} "
            f"| {held[name] / MiB:,.0f} | {rss} |"
        )
    return {
        "tok/s": speeds,
        "runs_s": times,
        "tensor_bytes": held,
        "decode_rss_added": added,
        "measured_at": time.time(),
    }


def tensor_bytes(model) -> int:
    """Bytes of a model's parameters and buffers, each tensor once (a tied table is shared);
    torch.ao's packed weights are not tensors of the module and count 0."""
    tensors = {t.data_ptr(): t for t in [*model.parameters(), *model.buffers()]}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def reset_peak_rss() -> int | None:
    """Reset the kernel's peak-RSS mark (Linux: 5 to /proc/self/clear_refs); the RSS now, or
    None where that cannot be done."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _proc_status("VmRSS")
    except OSError:
        return None


def peak_rss() -> int:
    return _proc_status("VmHWM")


def _proc_status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # kB
    raise OSError(f"no {field} in /proc/self/status")


def timed(row):
    """`time_gptlab(row)`, through gptlab's readable int8 path where the row's name says so."""
    from gptlab.quantization import int8

    int8.FAST_CPU = not row.label.endswith(READABLE)
    try:
        return time_gptlab(row)
    finally:
        int8.FAST_CPU = True


def measure_gpu_decode(args, device="cuda") -> dict:
    """Compiled decode tokens/s, bandwidth share and peak memory of bf16 and each GPU method."""
    import gc

    import torch

    from gptlab.config import GPTConfig
    from gptlab.generation import Decoder
    from gptlab.models.gpt import GPT

    if not torch.cuda.is_available():
        raise SystemExit("gpu-decode needs a CUDA GPU")
    device = torch.device(device)
    preset = args.preset or "gpt2-xl"
    torch.manual_seed(0)
    with device:  # initialised on the GPU (1.5B numbers), kept on the host in bf16
        base = GPT(GPTConfig.from_preset(preset, dropout=0.0))
    base = base.to(torch.bfloat16).eval().cpu()
    methods = [BF16, *args.gpu_methods.split(",")]
    if "fp8" in methods and torch.cuda.get_device_capability() < (8, 9):
        print("fp8 left out: it needs compute capability 8.9 or more (H100, H200, Ada)")
        methods.remove("fp8")
    batches = [int(b) for b in args.gpu_batches.split(",")]
    generator = torch.Generator().manual_seed(1)
    vocab = base.config.vocab_size
    prompts = {
        b: torch.randint(0, vocab, (b, args.prompt_len), generator=generator).tolist()
        for b in batches
    }
    group_size = args.group_size or default_group_size(base)
    peak = args.peak_bandwidth * 1e12
    print(
        f"\n{preset} ({base.num_params() / 1e6:,.0f}M parameters, random), bf16, "
        f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}; decode compiled "
        f"(CUDA graphs), prompt {args.prompt_len}, {args.gpu_new_tokens} new tokens, medians of "
        f"{args.reps}; int4 groups of {group_size}; % of {args.peak_bandwidth} TB/s\n"
        "\n| method | batch | decode tok/s | x bf16 | weights read a step MB | % of peak BW "
        "| peak GPU MiB | warm-up s |\n|---|---:|---:|---:|---:|---:|---:|---:|",
        flush=True,
    )
    results, began = {}, time.perf_counter()
    # Batch by batch, so that batch 1 (the targets) is printed first: a fresh copy of the model
    # for each row (seconds: copying and quantizing are cheap beside compiling).
    for batch in batches:
        for method in methods:
            torch._dynamo.reset()  # a fresh compile; frees the last one's CUDA graphs
            gc.collect()
            torch.cuda.empty_cache()
            model = copy.deepcopy(base).to(device)
            if method != BF16:
                model = quantized(model, method, group_size)
            weights = bytes_read_per_step(model)
            torch.cuda.reset_peak_memory_stats(device)
            cache = args.prompt_len + args.gpu_new_tokens
            decoder = Decoder(model, compile=True, cache_length=cache)
            row = Row(f"{method}, batch {batch}", prompts[batch], args.gpu_new_tokens, decoder)
            start = time.perf_counter()
            time_gptlab(row)  # compiles, records the CUDA graphs
            warm_up = time.perf_counter() - start
            seconds = statistics.median(time_gptlab(row)[0] for _ in range(args.reps))
            speed = batch * (args.gpu_new_tokens - 1) / seconds
            share = weights * (speed / batch) / peak  # steps/s = tokens/s / batch
            memory = torch.cuda.max_memory_allocated(device)
            results[(method, batch)] = {
                "tok/s": speed,
                "weights_bytes": weights,
                "bandwidth_share": share,
                "peak_bytes": memory,
                "warm_up_s": warm_up,
            }
            ratio = speed / results[(BF16, batch)]["tok/s"]
            print(
                f"| {method} | {batch} | {speed:,.1f} | {ratio:.2f}x | {weights / 1e6:,.0f} "
                f"| {100 * share:.0f}% | {memory / MiB:,.0f} | {warm_up:.0f} |",
                flush=True,
            )
            del decoder, row, model
    print(f"\ngpu-decode took {time.perf_counter() - began:.0f} s", flush=True)
    return {f"{method}, batch {batch}": r for (method, batch), r in results.items()}


def bytes_read_per_step(model) -> int:
    """Bytes of weights a decode step reads: every stored tensor once (the tied table once), but
    of the position table only a row a step."""
    tensors = {t.data_ptr(): t for t in model.state_dict().values()}
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    wpe = model.wpe.weight
    return total - wpe.numel() * wpe.element_size() + wpe[0].numel() * wpe.element_size()


def fp8_runs(device) -> bool:
    import torch

    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)


def measure_quality(args) -> dict:
    """Validation perplexity and greedy agreement of a trained run under each method."""
    import numpy as np
    import torch

    from gptlab.data.text import TokenData, resolve_text
    from gptlab.evaluation import perplexity
    from gptlab.generation import GenerationConfig, generate
    from gptlab.pretrained import load_model
    from gptlab.quantization.calibration import calibration_batches

    device = torch.device(args.device)
    model, tokenizer, info = load_model(args.run, device, task="lm")
    data = info["config"]["data"]
    split = TokenData.from_file(
        resolve_text(data["data"]), tokenizer, data.get("val_fraction", 0.1)
    )
    val = split.val[: args.quality_tokens]
    offsets = np.linspace(0, len(val) - 17, 8).astype(int)
    prompts = [[int(t) for t in val[o : o + 16]] for o in offsets]
    greedy = GenerationConfig(max_new_tokens=32, strategy="greedy", eos_id=None)
    models = {FLOAT: model}
    for method in args.quality_methods.split(","):
        if method == "fp8" and not fp8_runs(device):
            print("fp8 left out: it needs a CUDA GPU of compute capability 8.9 or more")
            continue
        calibration = None
        if method in ("int8-static", PERCENTILE):  # the training split, as `gptlab quantize`
            calibration = calibration_batches(split.train, model.config.context_length, 8, device)
        models[method] = quantized(model, method, args.group_size, calibration)
    if not args.no_peer and device.type == "cpu":
        models[PEER] = peer(model)
    results, reference = {}, None
    print(f"\nquality of {args.run} on {data['data']}'s validation split ({len(val):,} tokens):")
    for name, m in models.items():
        with torch.no_grad():
            loss = perplexity(m, val, model.config.context_length, device=device)
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
