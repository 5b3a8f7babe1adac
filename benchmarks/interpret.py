"""What looking inside costs, and that it reads the right numbers, at GPT-2 124M's shape.

speed: a plain forward pass (logits at every position) against the same pass caching every
activation (`run_with_cache`; attention patterns and per-head results are made from the cached
queries, keys and head outputs when read, so a row also reads every one of them), at 8 x 1024;
beside them, the peer: transformers' GPT2LMHeadModel, plain (SDPA) and returning every hidden
state and attention (eager attention, which it needs for that). Then activation patching of every
(layer, position) and every head of a 20-token prompt. Targets (issue 16), on the GPU: caching at
most 1.3x the plain pass, patching at most 10 s.

fidelity: the cached residual stream and attention patterns against transformers' hidden states
and attentions, same random weights, float32, at the 124M shape (the tests do it at tiny shapes).

    PYTHONPATH=src python3 benchmarks/interpret.py --only speed          # GPU: bf16 and fp32 rows
    PYTHONPATH=src python3 benchmarks/interpret.py                        # GPU: speed, fidelity
    uv run python benchmarks/interpret.py --quick                         # CPU: small shape, seconds

Times are medians of --reps runs after --warmup, the rows taking turns, with a device
synchronisation around each run.
Random weights: speed and agreement do not depend on training.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from gptlab.config import GPTConfig
from gptlab.device import resolve_device
from gptlab.interpret import run_with_cache
from gptlab.interpret.patching import answer_metric, patch_runs
from gptlab.models.gpt import GPT
from gptlab.pretrained import state_dict_to_hf, transformers_model_like

SHAPES = {
    "gpt2": dict(preset="gpt2", batch=8, tokens=1024, prompt=20),
    "quick": dict(preset="gpt2", batch=2, tokens=128, prompt=20, n_layer=4, n_embd=256, n_head=4),
}


def timed(fns: dict, device, reps: int, warmup: int) -> dict[str, float]:
    """Median seconds of each of `fns` ({name: function}), synchronised on CUDA. The functions
    take turns, one run each per round, so drift in clocks or memory state hits all alike."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def build(shape: dict, device, dtype) -> GPT:
    overrides = {k: shape[k] for k in ("n_layer", "n_embd", "n_head") if k in shape}
    torch.manual_seed(0)
    config = GPTConfig.from_preset(shape["preset"], dropout=0.0, **overrides)
    return GPT(config).to(device=device, dtype=dtype).eval()


def peer_of(model: GPT, attention: str):
    """transformers' GPT2LMHeadModel with `model`'s weights, with the given attention kernels."""
    peer = transformers_model_like(model.config)
    if hasattr(peer, "set_attn_implementation"):  # transformers 5
        peer.set_attn_implementation(attention)
    else:
        peer.config._attn_implementation = attention
    state = {k: v.float().cpu() for k, v in state_dict_to_hf(model.state_dict()).items()}
    peer.load_state_dict(state, strict=False)
    weight = next(model.parameters())
    return peer.to(device=weight.device, dtype=weight.dtype).eval()


@torch.no_grad()
def speed(shape: dict, device, dtype, reps: int, warmup: int) -> dict[str, float]:
    model = build(shape, device, dtype)
    idx = torch.randint(model.config.vocab_size, (shape["batch"], shape["tokens"]), device=device)

    def read_everything():
        _, cache = run_with_cache(model, idx)
        for layer in range(len(model.h)):  # each made, then dropped, as an analysis would
            cache[f"blocks.{layer}.attn.pattern"]
            cache[f"blocks.{layer}.attn.result"]

    fns = {
        "gptlab forward": lambda: model(idx, all_logits=True),
        "gptlab forward, every activation cached": lambda: run_with_cache(model, idx),
        "gptlab forward, every activation cached, every pattern and result read": read_everything,
    }
    try:
        sdpa, eager = peer_of(model, "sdpa"), peer_of(model, "eager")
        fns["transformers forward (sdpa)"] = lambda: sdpa(input_ids=idx)
        fns["transformers forward, hidden states and attentions (eager)"] = lambda: eager(
            input_ids=idx, output_hidden_states=True, output_attentions=True
        )
    except ImportError:
        print("transformers is not installed: no peer rows")
    rows = timed(fns, device, reps, warmup)
    fns.clear()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    prompt = torch.randint(model.config.vocab_size, (2, shape["prompt"]), device=device)
    clean, corrupt = prompt[:1], prompt[1:]
    metric = answer_metric(answer=1, wrong=2)
    name = f"patching every (layer, position) and head, {shape['prompt']} tokens"
    patching = {name: lambda: patch_runs(model, clean, corrupt, metric)}
    rows |= timed(patching, device, max(1, reps // 3), 1)
    return rows


@torch.no_grad()
def fidelity(shape: dict, device) -> None:
    model = build(shape, device, torch.float32)
    peer = peer_of(model, "eager")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # compare float32 with float32
    idx = torch.randint(model.config.vocab_size, (2, 256), device=device)
    out = peer(input_ids=idx, output_hidden_states=True, output_attentions=True)
    logits, cache = run_with_cache(model, idx)
    n = len(model.h)
    stream = max(
        float((cache[f"blocks.{i}.resid_pre"] - out.hidden_states[i]).abs().max()) for i in range(n)
    )
    final = float(
        (model.ln_f(cache[f"blocks.{n - 1}.resid_post"]) - out.hidden_states[n]).abs().max()
    )
    patterns = max(
        float((cache[f"blocks.{i}.attn.pattern"] - out.attentions[i]).abs().max()) for i in range(n)
    )
    print("\n| fidelity, float32, 2 x 256 tokens | max abs difference from transformers |")
    print("|---|---:|")
    print(f"| residual stream (resid_pre of every block) | {stream:.2e} |")
    print(f"| ln_f of the last resid_post | {final:.2e} |")
    print(f"| attention patterns | {patterns:.2e} |")
    print(f"| logits | {float((logits - out.logits).abs().max()):.2e} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=["speed", "fidelity"], help="one part only")
    parser.add_argument("--quick", action="store_true", help="a small shape on the CPU")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--dtype",
        choices=["auto", "float32", "bfloat16"],
        default="auto",
        help="auto: rows for bfloat16 and float32 on CUDA, float32 on the CPU",
    )
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    device = resolve_device("cpu" if args.quick and args.device == "auto" else args.device)
    shape = SHAPES["quick" if args.quick else "gpt2"]
    if args.quick:
        args.reps, args.warmup = min(args.reps, 3), min(args.warmup, 1)
    if args.dtype == "auto":
        dtypes = [torch.bfloat16, torch.float32] if device.type == "cuda" else [torch.float32]
    else:
        dtypes = [getattr(torch, args.dtype)]
    print(f"shape {shape}, device {device}, torch {torch.__version__}", flush=True)
    if args.only in (None, "speed"):
        for dtype in dtypes:
            if device.type == "cuda" and dtype == torch.float32:
                torch.backends.cuda.matmul.allow_tf32 = True  # as training runs float32 work
            rows = speed(shape, device, dtype, args.reps, args.warmup)
            plain = rows["gptlab forward"]
            print(
                f"\n| {str(dtype)[6:]}, {shape['batch']} x {shape['tokens']} tokens | ms | x gptlab forward |"
            )
            print("|---|---:|---:|")
            for name, seconds in rows.items():
                print(f"| {name} | {seconds * 1000:.1f} | {seconds / plain:.2f} |")
    if args.only in (None, "fidelity"):
        fidelity(shape, device)


if __name__ == "__main__":
    main()
