"""Tokenizer throughput on TinyShakespeare: gptlab's GPT2Tokenizer against transformers' GPT2TokenizerFast.

Both tokenizers are built from the same GPT-2 `vocab.json` and `merges.txt` and encode the same
work in the same process, alternating within each repetition; a warm-up call first fills both
BPE caches. Two workloads: the whole text as one string, and its lines as one batch. The
from-scratch `ByteLevelBPE` is timed on the whole text for information (its cache emptied before
each run, so every run does all the merging).

    GPTLAB_DATA=/work/shared/data uv run python benchmarks/tokenizer.py
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable


def median_seconds(
    work: Callable[[], object], repeats: int, before_each: Callable[[], None] = lambda: None
) -> float:
    """The median wall time of `repeats` calls of `work`."""
    times = []
    for _ in range(repeats):
        before_each()
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(
    first: Callable[[], object], second: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """Median wall times of two workloads timed in alternation, so drift in the machine hits both alike."""
    first_times, second_times = [], []
    for _ in range(repeats):
        for work, times in ((first, first_times), (second, second_times)):
            start = time.perf_counter()
            work()
            times.append(time.perf_counter() - start)
    return statistics.median(first_times), statistics.median(second_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", type=int, default=7, help="timed runs of each workload (default 7)"
    )
    parser.add_argument(
        "--bpe-repeats", type=int, default=3, help="timed runs of the from-scratch BPE (default 3)"
    )
    args = parser.parse_args()

    # Imported after parsing, so that --help answers at once.
    import tokenizers
    import transformers
    from transformers import GPT2TokenizerFast

    from gptlab.data.sources import resolve
    from gptlab.tokenizers import ByteLevelBPE, GPT2Tokenizer

    text = resolve("tinyshakespeare", "input.txt").read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    vocab_json = resolve("gpt2-tokenizer", "vocab.json")
    merges_txt = resolve("gpt2-tokenizer", "merges.txt")
    ours = GPT2Tokenizer.from_files(vocab_json, merges_txt)
    with tempfile.TemporaryDirectory() as folder:
        # From a folder of just these two files: the same vocabulary for both, in transformers 4 or 5.
        for path in (vocab_json, merges_txt):
            shutil.copy(path, folder)
        theirs = GPT2TokenizerFast.from_pretrained(folder)

    workloads = {
        "whole text": (lambda: ours.encode(text), lambda: theirs(text)["input_ids"]),
        f"{len(lines):,} lines, one batch": (
            lambda: ours.encode_batch(lines),
            lambda: theirs(lines)["input_ids"],
        ),
    }
    print(
        f"TinyShakespeare: {len(text):,} characters | {os.cpu_count()} CPUs, {platform.processor() or platform.machine()} | "
        f"tokenizers {tokenizers.__version__}, transformers {transformers.__version__} | median of {args.repeats}"
    )
    header = f"{'workload':<26} {'tokens':>9} {'gptlab s':>9} {'transformers s':>15} {'gptlab tok/s':>13} {'transformers tok/s':>19} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for name, (our_work, their_work) in workloads.items():
        our_ids, their_ids = our_work(), their_work()  # also the warm-up
        if our_ids != their_ids:
            raise SystemExit(f"{name}: gptlab and transformers disagree on the ids")
        tokens = len(our_ids) if isinstance(our_ids[0], int) else sum(map(len, our_ids))
        our_s, their_s = interleaved_medians(our_work, their_work, args.repeats)
        print(
            f"{name:<26} {tokens:>9,} {our_s:>9.3f} {their_s:>15.3f} {tokens / our_s:>13,.0f} "
            f"{tokens / their_s:>19,.0f} {their_s / our_s:>6.2f}"
        )
    print("ratio = gptlab tokens/s / transformers tokens/s (higher is better for gptlab)")

    scratch = ByteLevelBPE.from_files(vocab_json, merges_txt)
    scratch_ids = scratch.encode(text)  # also builds the pre-tokenizer regex once
    if scratch_ids != ours.encode(text):
        raise SystemExit("the from-scratch BPE disagrees with GPT2Tokenizer on the ids")
    scratch_s = median_seconds(
        lambda: scratch.encode(text), args.bpe_repeats, before_each=scratch.cache.clear
    )
    print(
        f"\nfrom-scratch ByteLevelBPE, whole text, cold cache: {scratch_s:.3f} s, "
        f"{len(scratch_ids) / scratch_s:,.0f} tokens/s (median of {args.bpe_repeats}; pure Python, for reading)"
    )


if __name__ == "__main__":
    main()
