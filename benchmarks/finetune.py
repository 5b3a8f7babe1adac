"""Generative fine-tuning from a base: what it gains and what it forgets, and how fast it trains.

    PYTHONPATH=src python3 benchmarks/finetune.py --base runs/gpt2-mini --device cuda   # a GPU
    GPTLAB_DATA=../shared/data uv run python benchmarks/finetune.py \\
        --random-base gpt2-mini --only speed                                          # 2 CPU cores

- domain: `gptlab finetune lm BASE --data poetry/whitman`, then the perplexity of the base and
  of the fine-tuned model on Whitman's validation split (the new corpus) and on english-mix's
  (the original one): what was gained, and what was forgotten.
- instruct: `gptlab finetune instruct BASE --data instruction-data`, then the response-only loss
  and the ROUGE-L and BLEU of the greedy answers of the base and of the fine-tuned model on the
  reference's test split (110 entries; the base is asked in the same prompt format).
- speed: an instruction fine-tuning step of gptlab's GPT and of transformers' GPT2LMHeadModel
  with the same weights, in the same loop, on the same bucketed batches, taking turns; tokens/s
  counts real (not padding) tokens. Also the padding that bucketing saves.

OpenAI's GPT-2 weights cannot be downloaded here, so the base is gptlab's local `gpt2-mini`
(`gptlab train --preset gpt2-mini`); with the hub, pass `--base gpt2` (or `gpt2-medium`, which
the published reference fine-tuned on this instruction data for two epochs).
"""

from __future__ import annotations

import time

PROCESS_START = time.perf_counter()

import argparse
import dataclasses
import statistics
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gptlab.cli import main as gptlab
from gptlab.config import GPTConfig
from gptlab.data.instructions import load_instructions, padding_report, split_instructions
from gptlab.data.text import TokenData, resolve_text
from gptlab.device import resolve_device
from gptlab.evaluation import perplexity
from gptlab.generation import GenerationConfig
from gptlab.models.gpt import GPT
from gptlab.pretrained import load_model, state_dict_to_hf, transformers_model_like
from gptlab.tasks.instruction import (
    InstructionSpec,
    generate_responses,
    prepare_data,
    response_loss,
    response_scores,
)
from gptlab.tokenizers import get_tokenizer
from gptlab.training.config import TrainConfig
from gptlab.training.trainer import Trainer

PARTS = ("domain", "instruct", "speed")


class HFLanguageModel(nn.Module):
    """transformers' GPT2LMHeadModel behind gptlab's (idx, targets) -> (logits, loss) call."""

    def __init__(self, hf):
        super().__init__()
        self.hf = hf

    def forward(self, idx, targets=None):
        logits = self.hf(input_ids=idx).logits
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
        return logits, loss


def val_perplexity(model, spec: str, tokenizer, device) -> float:
    tokens = TokenData.from_file(resolve_text(spec), tokenizer, 0.1).val
    return perplexity(model, tokens, model.config.context_length, 16, device)["perplexity"]


def domain(base_spec: str, device, out: Path, extra: list[str]) -> None:
    run = out / "whitman"
    status = gptlab(
        ["finetune", "lm", base_spec, "--data", "poetry/whitman", "--out", str(run),
         "--device", str(device), "--no-tensorboard", *extra]
    )  # fmt: skip
    assert status == 0, status
    base, tokenizer, _ = load_model(base_spec, device)
    tuned, _, _ = load_model(run, device)
    rows = []
    for name, model in (("base", base), ("fine-tuned on Whitman", tuned)):
        rows.append(
            (
                name,
                val_perplexity(model, "poetry/whitman", tokenizer, device),
                val_perplexity(model, "english-mix", tokenizer, device),
            )
        )
    print("\n| model | Whitman val perplexity (new) | english-mix val perplexity (original) |")
    print("|---|---:|---:|")
    for name, whitman, mix in rows:
        print(f"| {name} | {whitman:.2f} | {mix:.2f} |")
    (b_w, b_m), (t_w, t_m) = (row[1:] for row in rows)
    print(
        f"gained: Whitman perplexity {b_w:.2f} -> {t_w:.2f} ({(t_w / b_w - 1) * 100:+.1f}%); "
        f"forgotten: english-mix {b_m:.2f} -> {t_m:.2f} ({(t_m / b_m - 1) * 100:+.1f}%)",
        flush=True,
    )


def instruct(base_spec: str, device, out: Path, epochs: float, extra: list[str]) -> None:
    run = out / "instruct"
    status = gptlab(
        ["finetune", "instruct", base_spec, "--data", "instruction-data", "--out", str(run),
         "--device", str(device), "--epochs", str(epochs), "--no-tensorboard", *extra]
    )  # fmt: skip
    assert status == 0, status
    base, tokenizer, _ = load_model(base_spec, device)
    tuned, _, tuned_info = load_model(run, device)
    data = prepare_data(InstructionSpec(), tokenizer, base.config.context_length)
    test = data.batches("test", 8, tokenizer.eos_id)
    entries = split_instructions(load_instructions("instruction-data"))["test"]
    references = [entry.output for entry in entries]
    greedy = GenerationConfig(128, strategy="greedy", overflow="slide")
    print(
        "\n| model | test response-only loss | perplexity | ROUGE-L | BLEU |\n|---|---:|---:|---:|---:|"
    )
    for name, model in (("base", base), ("instruction fine-tuned", tuned)):
        r = response_loss(model, test, device)
        # The base is asked in the same prompt format, though it was never taught it.
        answers = generate_responses(model, tokenizer, tuned_info["config"], entries, greedy)
        scores = response_scores(answers, references)
        print(
            f"| {name} | {r['loss']:.4f} | {r['perplexity']:.2f} | {scores['rouge_l']:.2f} "
            f"| {scores['bleu']:.2f} |",
            flush=True,
        )


def speed(base_model, tokenizer, device, steps: int | None, batch_size: int) -> None:
    """Time `steps` (default: one epoch) after a whole epoch of warm-up: bucketed batches come in
    many lengths, and each new shape costs a first time (allocator, kernel choice) in both."""
    data = prepare_data(InstructionSpec(), tokenizer, base_model.config.context_length)
    train = data.splits["train"]
    report = padding_report(train.lengths, batch_size)
    print(
        f"\npadding of one epoch at batch {batch_size} ({report['tokens']:,} real tokens): "
        f"padded to the longest of the set {report['pad_to_longest']:,}, random batches "
        f"{report['random_batches']:,}, bucketed batches {report['bucketed']:,} "
        f"(saves {report['saved']:,} tokens against padding to the longest)"
    )
    state = {k: v.detach().clone() for k, v in base_model.state_dict().items()}
    peer = transformers_model_like(base_model.config)
    missing, unexpected = peer.load_state_dict(state_dict_to_hf(state), strict=False)
    assert not unexpected and all(name.endswith("lm_head.weight") for name in missing), missing
    models = {"gptlab": base_model, "transformers": HFLanguageModel(peer)}
    batches = data.batches("train", batch_size, tokenizer.eos_id, seed=0)
    warmup = batches.batches_per_epoch
    steps = steps or batches.batches_per_epoch
    config = TrainConfig(
        max_iters=warmup + steps,
        batch_size=batch_size,
        lr=5e-5,
        device=str(device),
        eval_interval=0,
    )
    trainers = {
        name: Trainer(
            model,
            config,
            train_batch=lambda step, index: batches.train_batch(step, index, device),
            device=device,
        )
        for name, model in models.items()
    }
    seconds = {name: [] for name in models}
    tokens = 0
    for step in range(warmup + steps):
        epoch, k = batches.locate(step, 0)
        real = int(sum(train.lengths[i] for i in batches.epoch_batches(epoch)[k]))
        for name, trainer in trainers.items():
            trainer.step = step
            _sync(device)
            start = time.perf_counter()
            trainer.train_step(config.lr)
            _sync(device)
            if step >= warmup:
                seconds[name].append(time.perf_counter() - start)
        if step >= warmup:
            tokens += real
    mine, theirs = (sum(seconds[name]) for name in models)
    print(
        f"\ninstruction fine-tuning step, batch {batch_size}, {steps} steps after {warmup} of warm-up "
        f"({device}, {'bf16 autocast' if device.type == 'cuda' else 'float32'}), real tokens only:"
    )
    print("| model | tokens/s | median ms/step |\n|---|---:|---:|")
    for name, total in (("gptlab", mine), ("transformers", theirs)):
        print(f"| {name} | {tokens / total:,.0f} | {statistics.median(seconds[name]) * 1e3:.2f} |")
    print(f"ratio gptlab / transformers tokens/s: {theirs / mine:.2f}")


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", default="runs/gpt2-mini")
    parser.add_argument("--random-base", metavar="PRESET", help="random weights (speed only)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--only", default=",".join(PARTS), help=f"parts: {', '.join(PARTS)}")
    parser.add_argument("--epochs", type=float, default=2.0, help="instruction epochs (default 2)")
    parser.add_argument("--timing-steps", type=int, help="default: one epoch, after one of warm-up")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="a few steps of each: a smoke run")
    parser.add_argument(
        "--keep", metavar="DIR", help="write the fine-tuned runs here (default: a temporary folder)"
    )
    args = parser.parse_args()
    parts = set(args.only.split(","))
    device = resolve_device(args.device)
    print(f"base {args.random_base or args.base}; device {device}; torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.keep or temporary
        extra = ["--max-iters", "4", "--eval-interval", "2"] if args.quick else []
        if "domain" in parts:
            domain(args.base, device, Path(folder), extra)
        if "instruct" in parts:
            instruct(args.base, device, Path(folder), args.epochs, extra)
    if "speed" in parts:
        if args.random_base:
            torch.manual_seed(0)
            model = GPT(GPTConfig.from_preset(args.random_base, dropout=0.0))
            tokenizer = get_tokenizer("gpt2")
        else:
            base, tokenizer, _ = load_model(args.base)
            model = GPT(dataclasses.replace(base.config, dropout=0.0))
            model.load_state_dict(base.state_dict())
        speed(model, tokenizer, device, args.timing_steps, args.batch_size)
    print(f"\nprocess wall time: {time.perf_counter() - PROCESS_START:.1f} s")


if __name__ == "__main__":
    main()
