"""The CPU recipe, whole processes: `gptlab train --preset shakespeare-char-cpu` against nanoGPT's
`train.py` with the same settings, alternating, and the ratio of their median wall times.

The recipe: 4 layers, width 128, 4 heads, context 64, batch 12, 2,000 steps, AdamW (lr 1e-3
decaying to 1e-4 after 100 warmup steps, beta2 0.99), an evaluation every 250 steps on 20
batches. nanoGPT runs its `config/train_shakespeare_char.py` with the CPU overrides from its
README (`--device=cpu --compile=False`, the shape above, `--dropout=0.0`, `--log_interval=1`);
gptlab runs the command its README gives. Each run is a child process timed from start to exit,
imports, data and checkpoints included; the two alternate (gptlab first in odd repetitions, the
reference first in even ones), with the same number of threads (`OMP_NUM_THREADS`), so that the
load of a shared machine hits both alike. Each child's CPU seconds (user + system) are given
too: on one thread they are its work, which other processes' load changes far less than its
wall time. The final validation loss of each comes from its own
log (gptlab: metrics.jsonl; nanoGPT: its "step N: ... val loss" line); nanoGPT measures it on
20 random batches, gptlab on 20 fixed, evenly spread ones.

This script downloads nothing: give it a nanoGPT checkout (karpathy/nanoGPT, with `train.py`,
`model.py`, `configurator.py` and `config/`). Its data is written into that checkout as its
`data/shakespeare_char/prepare.py` lays it out (the first 90% of TinyShakespeare's characters to
train.bin, the rest to val.bin, uint16 ids of the sorted characters, meta.pkl), from the
TinyShakespeare that gptlab resolves (GPTLAB_DATA or its cache).

    GPTLAB_DATA=../shared/data uv run python benchmarks/vs_reference_cpu.py --reference /tmp/nanogpt
    ... --reps 1 --max-iters 100          # a smoke run of a minute or two
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STEPS = 2000
REFERENCE_FLAGS = [
    "--device=cpu",
    "--compile=False",
    "--eval_iters=20",
    "--log_interval=1",
    "--block_size=64",
    "--batch_size=12",
    "--n_layer=4",
    "--n_head=4",
    "--n_embd=128",
    "--dropout=0.0",
]
REFERENCE_VAL = re.compile(r"step (\d+): train loss [\d.]+, val loss ([\d.]+)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reference", type=Path, help="a nanoGPT checkout (karpathy/nanoGPT)")
    parser.add_argument("--reps", type=int, default=3, help="runs of each (default 3)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="OMP_NUM_THREADS for both (default: gptlab's own choice for the recipe, "
        "which the reference is given too)",
    )
    parser.add_argument(
        "--max-iters", type=int, default=STEPS, help=f"steps of each run (default {STEPS})"
    )
    parser.add_argument(
        "--gptlab-args", default="", help="extra flags for `gptlab train`, e.g. '--compile'"
    )
    parser.add_argument(
        "--keep", type=Path, default=None, help="keep the runs and logs in this folder"
    )
    return parser.parse_args()


def prepare_reference_data(reference: Path) -> None:
    """train.bin, val.bin and meta.pkl as nanoGPT's shakespeare_char/prepare.py writes them."""
    from gptlab.data.sources import resolve

    text = resolve("tinyshakespeare").read_text(encoding="utf-8")
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    ids = np.array([stoi[ch] for ch in text], dtype=np.uint16)
    split = int(len(text) * 0.9)
    folder = reference / "data" / "shakespeare_char"
    folder.mkdir(parents=True, exist_ok=True)
    ids[:split].tofile(folder / "train.bin")
    ids[split:].tofile(folder / "val.bin")
    meta = {"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}
    with open(folder / "meta.pkl", "wb") as file:
        pickle.dump(meta, file)


def run_child(command: list[str], cwd: Path, env: dict, log: Path) -> tuple[float, float]:
    """Run one child process to its end, its output to `log`; return its wall seconds and the
    CPU seconds (user + system) it used, which the load of other processes changes far less."""
    started = time.perf_counter()
    with open(log, "w") as out:
        child = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        sys.exit(f"{' '.join(command[:4])} ... failed (exit {code}):\n{tail}")
    return seconds, usage.ru_utime + usage.ru_stime


def gptlab_val_loss(run_dir: Path) -> float:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if r.get("split") == "val"][-1]


def reference_val_loss(log: Path) -> float:
    found = REFERENCE_VAL.findall(log.read_text())
    if not found:
        sys.exit(f"no validation loss in the reference's output {log}")
    return float(found[-1][1])


def default_threads() -> int:
    """The thread count `gptlab train` picks for the recipe (gptlab.device.cpu_threads)."""
    from gptlab.config import GPTConfig
    from gptlab.device import cpu_threads
    from gptlab.models.gpt import GPT

    model = GPT(GPTConfig.from_preset("shakespeare-char-cpu", vocab_size=65))
    return cpu_threads(0, model.num_params())


def main() -> None:
    args = parse_args()
    if args.reference is None:
        print("no --reference given: pass a nanoGPT checkout (karpathy/nanoGPT); skipping")
        return
    if not (args.reference / "train.py").is_file():
        sys.exit(f"{args.reference} holds no train.py: pass a nanoGPT checkout")
    prepare_reference_data(args.reference)
    threads = args.threads or default_threads()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parents[1] / "src"), env.get("PYTHONPATH")])
    )
    work = args.keep or Path(tempfile.mkdtemp(prefix="vs-reference-"))
    work.mkdir(parents=True, exist_ok=True)
    steps = args.max_iters
    gptlab_extra = args.gptlab_args.split()
    print(
        f"{args.reps} x 2 runs of {steps} steps, {threads} thread(s) each, "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores",
        flush=True,
    )

    times: dict[str, list[float]] = {"gptlab": [], "reference": []}
    cpu_times: dict[str, list[float]] = {"gptlab": [], "reference": []}
    losses: dict[str, list[float]] = {"gptlab": [], "reference": []}
    for rep in range(args.reps):
        order = ("gptlab", "reference") if rep % 2 == 0 else ("reference", "gptlab")
        for name in order:
            log = work / f"{name}-{rep}.log"
            if name == "gptlab":
                run_dir = work / f"gptlab-{rep}"
                command = [sys.executable, "-m", "gptlab", "train"]
                command += ["--preset", "shakespeare-char-cpu", "--out", str(run_dir)]
                command += ["--max-iters", str(steps), *gptlab_extra]
                seconds, cpu = run_child(command, Path.cwd(), env, log)
                loss = gptlab_val_loss(run_dir)
            else:
                command = [sys.executable, "train.py", "config/train_shakespeare_char.py"]
                command += [*REFERENCE_FLAGS, f"--max_iters={steps}", f"--lr_decay_iters={steps}"]
                command += [f"--out_dir={work / f'reference-out-{rep}'}"]
                seconds, cpu = run_child(command, args.reference, env, log)
                loss = reference_val_loss(log)
            times[name].append(seconds)
            cpu_times[name].append(cpu)
            losses[name].append(loss)
            print(
                f"  rep {rep + 1} {name}: {seconds:.1f} s ({cpu:.1f} s of CPU), val loss {loss:.4f}, "
                f"load {os.getloadavg()[0]:.2f}",
                flush=True,
            )

    print()
    print("| | gptlab | nanoGPT | nanoGPT / gptlab |")
    print("| --- | ---: | ---: | ---: |")
    for label, values in (("wall s", times), ("CPU s", cpu_times)):
        median = {name: statistics.median(seconds) for name, seconds in values.items()}
        print(
            f"| median {label} | {median['gptlab']:.1f} | {median['reference']:.1f} | "
            f"{median['reference'] / median['gptlab']:.2f}x |"
        )
        each = {name: ", ".join(f"{s:.1f}" for s in seconds) for name, seconds in values.items()}
        print(f"| each run, {label} | {each['gptlab']} | {each['reference']} | |")
    final = {name: ", ".join(f"{v:.4f}" for v in values) for name, values in losses.items()}
    print(f"| final val loss | {final['gptlab']} | {final['reference']} | |")
    print(f"\nthreads {threads}; load average at the end {os.getloadavg()[0]:.2f}; logs in {work}")


if __name__ == "__main__":
    main()
