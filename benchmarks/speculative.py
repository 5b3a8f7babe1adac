"""Speculative decoding: a big model's greedy decoding alone, and with a small draft model.

Both models must predict alike for a draft to pay, so they are trained on the same text:
`--train` pretrains the target (default the gpt2-xl shape, at a shorter context) and the draft
(gpt2-mini) with `gptlab train` on TinyShakespeare in GPT-2's BPE, or `--target RUN --draft
RUN` takes models you have. With the hub, `--target gpt2-xl --draft gpt2` measures OpenAI's
pair. Each prompt is a slice of the validation text; every configuration decodes the same
prompts greedily at batch 1, compiled (CUDA graphs) on a GPU, in alternation, and the tokens of
each draft row are compared with the target's own.

    PYTHONPATH=src GPTLAB_DATA=$PWD/devdata python3 benchmarks/speculative.py --train 300
    GPTLAB_DATA=../shared/data uv run python benchmarks/speculative.py --quick   # CPU smoke run
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--target", help="the big model: run directory, HF folder or hub name")
    add("--draft", help="the small model (same tokenizer)")
    add("--train", type=int, metavar="STEPS", help="pretrain target and draft for STEPS steps")
    add("--target-preset", default="gpt2-xl", help="--train: the target's shape (default gpt2-xl)")
    add(
        "--draft-preset", default="gpt2-mini", help="--train: the draft's shape (default gpt2-mini)"
    )
    add("--context", type=int, default=256, help="--train: context length (default 256)")
    add("--out", help="--train: keep the two runs here (default: a temporary folder)")
    add("--draft-tokens", default="2,4,6", help="guesses per round to try (default 2,4,6)")
    add("--prompts", type=int, default=4, help="prompts (default 4)")
    add("--prompt-len", type=int, default=32, help="prompt tokens (default 32)")
    add("--new-tokens", type=int, default=128, help="new tokens per prompt (default 128)")
    add("--reps", type=int, default=3, help="timed repetitions (default 3)")
    add("--device", default="auto")
    add("--quick", action="store_true", help="tiny shapes and steps: a CPU smoke run")
    args = parser.parse_args()
    if args.quick:
        args.train = args.train or 20
        args.target_preset, args.draft_preset, args.context = "shakespeare-char-cpu", "tiny", 64
        args.new_tokens, args.reps, args.prompts, args.prompt_len = 24, 1, 2, 16
        args.draft_tokens = "3"
    if not args.train and not (args.target and args.draft):
        parser.error("give --target and --draft, or --train STEPS to make them")
    return args


def train(preset: str, steps: int, out: Path, args, quick: bool) -> Path:
    """A `gptlab train` run of `preset` on TinyShakespeare, GPT-2 BPE (characters when quick)."""
    command = [sys.executable, "-m", "gptlab", "train", "--preset", preset, "--out", str(out),
               "--max-iters", str(steps), "--eval-interval", str(steps), "--eval-iters", "4",
               "--context-length", str(args.context), "--no-tensorboard", "--warmup-iters", "20",
               "--lr", "3e-4" if not quick else "1e-3"]  # fmt: skip
    if quick:
        command += ["--tokenizer", "char", "--vocab-size", "65", "--batch-size", "8"]
    else:
        command += ["--tokenizer", "gpt2", "--batch-size", "16", "--dropout", "0.0"]
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"training {preset} failed:\n{done.stderr[-3000:]}")
    print(f"  trained in {time.perf_counter() - start:.0f} s", flush=True)
    return out


def main() -> None:
    args = parse_args()
    import torch

    from gptlab.device import resolve_device
    from gptlab.generation import Decoder, GenerationConfig
    from gptlab.generation.loop import batch_prompts, decode_tokens
    from gptlab.generation.speculative import DraftStats, speculative_tokens
    from gptlab.pretrained import load_model

    device = resolve_device(args.device)
    folder = Path(args.out or tempfile.mkdtemp(prefix="speculative-"))
    if args.train:
        # The draft's vocabulary must be the target's: the char presets differ, so quick sets 65.
        args.target = str(
            train(args.target_preset, args.train, folder / "target", args, args.quick)
        )
        args.draft = str(train(args.draft_preset, args.train, folder / "draft", args, args.quick))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    target, tokenizer, _ = load_model(args.target, device, task="lm")
    draft = load_model(args.draft, device, task="lm")[0]
    target.to(dtype).eval()
    draft.to(dtype).eval()
    compile_ = device.type == "cuda"
    text = tokenizer.encode(Path(corpus_file()).read_text()[-20000:])
    stride = max(1, (len(text) - args.prompt_len) // args.prompts)
    prompts = [text[i * stride : i * stride + args.prompt_len] for i in range(args.prompts)]
    config = GenerationConfig(strategy="greedy", max_new_tokens=args.new_tokens, overflow="stop")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    target_decoder = Decoder(target, compile=compile_, cache_length=target.config.context_length)
    draft_decoder = Decoder(draft, compile=compile_, cache_length=target.config.context_length)

    def decode(prompt, k: int, stats) -> tuple[float, list[int]]:
        with torch.inference_mode():
            ids, _ = batch_prompts(target_decoder, [prompt], config)
            sync()
            start = time.perf_counter()
            loop = (
                decode_tokens(target_decoder, ids, None, config)
                if k == 0
                else speculative_tokens(target_decoder, draft_decoder, ids, config, k, stats)
            )
            tokens = torch.cat(list(loop)).tolist()
            sync()
        return time.perf_counter() - start, tokens

    settings = [0] + [int(k) for k in args.draft_tokens.split(",")]
    for k in settings:  # warm-up: compiles each shape
        decode(prompts[0], k, DraftStats())
    seconds = {k: [] for k in settings}
    outputs, stats = {}, {k: DraftStats() for k in settings}
    for rep in range(args.reps):
        for k in settings[rep % len(settings) :] + settings[: rep % len(settings)]:
            total = 0.0
            for i, prompt in enumerate(prompts):
                elapsed, tokens = decode(prompt, k, stats[k] if rep == 0 else DraftStats())
                total += elapsed
                outputs.setdefault((k, i), tokens)
            seconds[k].append(total)
    n_target = sum(p.numel() for p in target.parameters())
    n_draft = sum(p.numel() for p in draft.parameters())
    print(
        f"\nspeculative decoding, {device} ({str(dtype)[6:]}, compiled {compile_}), target "
        f"{n_target / 1e6:,.0f}M parameters, draft {n_draft / 1e6:,.1f}M; {len(prompts)} prompts "
        f"of {args.prompt_len} tokens, {args.new_tokens} new tokens each, greedy, batch 1; "
        f"medians of {args.reps}"
    )
    base = statistics.median(seconds[0])
    total_tokens = len(prompts) * args.new_tokens
    print(
        "| draft tokens | tokens/s | speed-up | guesses kept | tokens per target call | same tokens as alone |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for k in settings:
        elapsed = statistics.median(seconds[k])
        same = sum(outputs[(k, i)] == outputs[(0, i)] for i in range(len(prompts)))
        s = stats[k]
        kept = f"{s.accepted / s.proposed:.0%}" if s.proposed else ""
        per_call = f"{s.tokens / s.rounds:.2f}" if s.rounds else "1.00"
        print(
            f"| {k or 'none (target alone)'} | {total_tokens / elapsed:,.0f} | {base / elapsed:.2f} "
            f"| {kept} | {per_call} | {same}/{len(prompts)} |"
        )


def corpus_file() -> str:
    from gptlab.data.sources import resolve

    return str(resolve("tinyshakespeare", "input.txt"))


if __name__ == "__main__":
    main()
