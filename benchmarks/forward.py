"""Forward and forward+backward speed of gptlab's GPT against transformers' GPT2LMHeadModel.

Both models hold the same random weights (copied with `gptlab.pretrained.state_dict_to_hf`), in
the same dtype, on the same device, and do the same work: logits at all B x T positions and a
cross-entropy loss over them. transformers shifts `labels` inside the model; gptlab is given the
same tokens already shifted, its last target ignored, so both average over the same B x (T - 1)
predictions. transformers runs with `use_cache=False` (a training step keeps no cache).

- forward: `loss = model(...)` under `torch.no_grad()`, models in eval mode;
- fwd+bwd: `loss = model(...)`, `loss.backward()`, `zero_grad(set_to_none=True)`, train mode.

The two models' repetitions alternate (A B B A A B ...) so that drift in clock speed or memory
state hits both alike; the table gives medians. Peak memory is measured in the last warmup pass
of each model and row, as the memory in use at the pass's peak above what was in use before it
(the weights of both models stay resident): on CUDA from `torch.cuda.max_memory_allocated`, on the
CPU as the peak resident set size (sampled every millisecond, after returning freed heap to the
OS with glibc's malloc_trim), which also counts allocator slack; "n/a" where neither is readable.

    uv run python benchmarks/forward.py                     # CPU: float32, eager (a few minutes)
    uv run python benchmarks/forward.py --quick             # smoke test: tiny preset, seconds
    PYTHONPATH=src python3 benchmarks/forward.py --device cuda   # bf16, eager and compiled rows
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import os
import platform
import statistics
import threading
import time
from dataclasses import dataclass, field

PASSES = ("forward", "fwd+bwd")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="default: cuda if available",
    )
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16"],
        help="default: bf16 on CUDA, fp32 on CPU",
    )
    parser.add_argument(
        "--compile",
        default="auto",
        choices=["auto", "none", "both", "only"],
        help="rows without torch.compile (none), with and without (both), or compiled only; "
        "default: both on CUDA, none on CPU",
    )
    parser.add_argument(
        "--preset", default=None, help="model shape (default gpt2, 124M; tiny with --quick)"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="default 8 (2 with --quick)")
    parser.add_argument(
        "--context", type=int, default=None, help="tokens per row (default 1024; 32 with --quick)"
    )
    parser.add_argument(
        "--reps", type=int, default=None, help="timed repetitions per row (default 20 CUDA, 3 CPU)"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="untimed repetitions first, at least 1 (default 5 CUDA, 1 CPU)",
    )
    parser.add_argument(
        "--passes", default="forward,fwd+bwd", help="which passes to time (comma-separated)"
    )
    parser.add_argument(
        "--hf-attention",
        default="sdpa",
        choices=["sdpa", "eager"],
        help="transformers' attention (default sdpa)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads for torch (default torch's)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: tiny preset, batch 2, context 32, 3 reps"
    )
    args = parser.parse_args()
    quick = dict(preset="tiny", batch_size=2, context=32, reps=3, warmup=1)
    full = dict(preset="gpt2", batch_size=8, context=1024)
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.passes = [p.strip() for p in args.passes.split(",") if p.strip()]
    unknown = sorted(set(args.passes) - set(PASSES))
    if unknown:
        parser.error(f"unknown pass(es) {', '.join(unknown)}; choose from {', '.join(PASSES)}")
    return args


@dataclass
class Row:
    device: str
    dtype: str
    compiled: bool
    pass_name: str
    ms: dict[str, float] = field(default_factory=dict)  # model name -> median milliseconds
    peak_mib: dict[str, float | None] = field(default_factory=dict)
    error: str | None = None


def main() -> None:
    args = parse_args()
    import torch
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(
        args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    on_cuda = device.type == "cuda"
    dtype_name = args.dtype if args.dtype != "auto" else ("bfloat16" if on_cuda else "float32")
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype_name]
    compile_mode = args.compile if args.compile != "auto" else ("both" if on_cuda else "none")
    compile_options = {"none": [False], "both": [False, True], "only": [True]}[compile_mode]
    reps = args.reps if args.reps is not None else (20 if on_cuda else 3)
    warmup = args.warmup if args.warmup is not None else (5 if on_cuda else 1)

    started = time.perf_counter()
    models, idx, targets = build_models(args, device, dtype)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {describe(device)}")
    print(
        f"preset {args.preset} ({models['gptlab'].num_params() / 1e6:.1f}M parameters), batch {args.batch_size}, "
        f"context {args.context}, {dtype_name}, transformers attention {args.hf_attention}, "
        f"{reps} reps after {warmup} warmup"
    )
    check_same_loss(models, idx, targets, dtype)

    rows = []
    for compiled in compile_options:
        runners = {
            name: make_runner(name, model, idx, targets, compiled) for name, model in models.items()
        }
        for pass_name in args.passes:
            row = Row(device.type, dtype_name, compiled, pass_name)
            try:
                steps = {
                    name: make_step(runner, models[name], pass_name)
                    for name, runner in runners.items()
                }
                row.ms, row.peak_mib = measure(steps, reps, warmup, device)
            except (
                Exception
            ) as error:  # a failing row (e.g. a compile error) should not hide the others
                row.error = (
                    f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                )
            rows.append(row)
            print_row_progress(row)
    print()
    print_table(rows)
    print(f"\ntook {time.perf_counter() - started:.0f} s")


def build_models(args, device, dtype):
    """gptlab's GPT and transformers' GPT2LMHeadModel with the same random weights, and a batch."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from gptlab.config import GPTConfig
    from gptlab.models.gpt import GPT, IGNORE_INDEX
    from gptlab.pretrained import HF_BUFFER_SUFFIXES, config_to_hf, state_dict_to_hf

    config = GPTConfig.from_preset(args.preset, dropout=0.0)
    if args.context > config.context_length:
        raise SystemExit(
            f"--context {args.context} is longer than preset {args.preset}'s {config.context_length}"
        )
    torch.manual_seed(0)
    gptlab = GPT(config)
    hf_values = {**config_to_hf(config), "bos_token_id": None, "eos_token_id": None}
    hf = GPT2LMHeadModel(GPT2Config(**hf_values, attn_implementation=args.hf_attention))
    result = hf.load_state_dict(state_dict_to_hf(gptlab.state_dict()), strict=False)
    missing = [
        k
        for k in result.missing_keys
        if k != "lm_head.weight" and not k.endswith(HF_BUFFER_SUFFIXES)
    ]
    if result.unexpected_keys or missing:  # the head is tied to wte; old versions add mask buffers
        raise RuntimeError(f"weights did not map one to one: {result}")
    models = {"gptlab": gptlab, "transformers": hf}
    for model in models.values():
        model.to(device=device, dtype=dtype)
    if hf.lm_head.weight.data_ptr() != hf.transformer.wte.weight.data_ptr():
        raise RuntimeError("transformers' lm_head is no longer tied to wte")

    generator = torch.Generator().manual_seed(1)
    idx = torch.randint(
        0, config.vocab_size, (args.batch_size, args.context), generator=generator
    ).to(device)
    ignored = torch.full((args.batch_size, 1), IGNORE_INDEX, device=device)
    targets = torch.cat(
        [idx[:, 1:], ignored], dim=1
    )  # what transformers' internal shift of labels=idx gives
    return models, idx, targets


def make_runner(name, model, idx, targets, compiled):
    """A function of no arguments that returns the model's loss on the batch."""
    import torch

    module = torch.compile(model) if compiled else model
    if name == "gptlab":
        return lambda: module(idx, targets)[1]
    return lambda: module(input_ids=idx, labels=idx, use_cache=False).loss


def make_step(runner, model, pass_name):
    import torch

    if pass_name == "forward":

        def forward():
            model.eval()
            with torch.no_grad():
                runner()

        return forward

    def forward_backward():
        model.train()
        runner().backward()
        model.zero_grad(set_to_none=True)

    return forward_backward


def check_same_loss(models, idx, targets, dtype) -> None:
    """The two models must compute the same thing before their speeds can be compared."""
    import torch

    with torch.no_grad():
        losses = {}
        for name, model in models.items():
            model.eval()
            runner = make_runner(name, model, idx, targets, compiled=False)
            losses[name] = runner().float().item()
    difference = abs(losses["gptlab"] - losses["transformers"])
    tolerance = 1e-4 if dtype == torch.float32 else 5e-2
    print(
        f"loss: gptlab {losses['gptlab']:.6f}, transformers {losses['transformers']:.6f} (|diff| {difference:.1e})"
    )
    if difference > tolerance:
        raise RuntimeError(
            f"the models disagree (|loss difference| {difference:.2e} > {tolerance:.0e})"
        )


def measure(steps: dict, reps: int, warmup: int, device) -> tuple[dict, dict]:
    """Median milliseconds of each step over `reps` timed repetitions, and its peak memory in MiB
    during the last untimed one (so there is always at least one). The steps alternate in
    order (A B, B A, ...), so that neither always runs first."""
    synchronize = synchronizer(device)
    names = list(steps)
    times, peaks = {name: [] for name in names}, {}
    warmup = max(warmup, 1)
    for rep in range(warmup + reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            if rep == warmup - 1:
                peaks[name] = peak_memory_mib(steps[name], device)
                continue
            synchronize()
            start = time.perf_counter()
            steps[name]()
            synchronize()
            if rep >= warmup:
                times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}, peaks


def peak_memory_mib(step, device) -> float | None:
    """Memory in use at the peak of one `step`, above what was in use before it, in MiB."""
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    if resident_bytes() is None:
        step()
        return None
    with ResidentPeak() as peak:
        step()
    return peak.bytes / 2**20


def resident_bytes() -> int | None:
    """This process's resident set size, from /proc (Linux); None elsewhere."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def release_free_heap() -> None:
    """Hand memory freed by earlier passes back to the OS, so it shows again when reused."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to hand back
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class ResidentPeak:
    """The peak resident set size above its starting level while the block runs."""

    def __enter__(self) -> ResidentPeak:
        release_free_heap()
        self.start = self.peak = resident_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, resident_bytes())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, resident_bytes())
        self.bytes = self.peak - self.start


def synchronizer(device):
    import torch

    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def describe(device) -> str:
    import torch

    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}"
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def print_row_progress(row: Row) -> None:
    label = f"{row.device} {row.dtype} {'compiled' if row.compiled else 'eager'} {row.pass_name}"
    if row.error:
        print(f"  {label}: failed ({row.error})", flush=True)
    else:
        print(
            f"  {label}: gptlab {row.ms['gptlab']:.1f} ms, transformers {row.ms['transformers']:.1f} ms",
            flush=True,
        )


def print_table(rows: list[Row]) -> None:
    header = (
        "device",
        "dtype",
        "compile",
        "pass",
        "gptlab ms",
        "transformers ms",
        "ratio",
        "gptlab peak MiB",
        "transformers peak MiB",
    )
    lines = []
    for row in rows:
        cells = [row.device, row.dtype, "yes" if row.compiled else "no", row.pass_name]
        if row.error:
            cells += ["failed", "failed", "-", "-", "-"]
        else:
            ratio = row.ms["transformers"] / row.ms["gptlab"]
            cells += [f"{row.ms['gptlab']:.1f}", f"{row.ms['transformers']:.1f}", f"{ratio:.2f}"]
            cells += [mib(row.peak_mib["gptlab"]), mib(row.peak_mib["transformers"])]
        lines.append(cells)
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines)]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("-|-".join("-" * w for w in widths))
    for cells in lines:
        print(" | ".join(c.ljust(w) for c, w in zip(cells, widths)))
    print("ratio = transformers ms / gptlab ms (> 1: gptlab faster)")
    for row in rows:
        if row.error:
            print(f"{row.device} {row.dtype} compile={row.compiled} {row.pass_name}: {row.error}")


def mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


if __name__ == "__main__":
    main()
