"""The encoder-decoder: training speed against torch.nn.Transformer, Multi30K translation quality,
and the toy tasks.

    PYTHONPATH=src GPTLAB_DATA=$PWD/devdata python3 benchmarks/seq2seq.py --device cuda   # a GPU
    GPTLAB_DATA=../shared/data uv run python benchmarks/seq2seq.py --quick               # CPU smoke run

- speed: training tokens/s of gptlab's `Seq2Seq` and of `torch.nn.Transformer` of the same shape
  (the Multi30K tutorial's: 3 encoder and 3 decoder layers, width 256, 8 heads, feed-forward 512,
  pre-LN, tanh-GELU, sinusoidal positions, embeddings scaled by sqrt(width), the output tied to
  the target embeddings), in one training loop: the same batches (synthetic ids, lengths drawn
  per row, padded), the same label-smoothed loss, AdamW (fused on CUDA), bf16 autocast on a GPU,
  optionally both compiled. The two take turns, repetition after repetition; the figure is the
  median. tokens/s counts the real (not padding) source and target tokens of a step.
- multi30k: `gptlab seq2seq train --task multi30k --src S --tgt T` in a child process (timed),
  then, in this process, the run's test perplexity (teacher forcing, no label smoothing) and its
  translations of the 1,000 test_2016_flickr sentences by greedy decoding and by beam search
  (width 5), each timed, scored with `gptlab.evaluation` (sacrebleu): the tutorials' lower-cased
  tokenized BLEU, sacreBLEU, chrF. de-en is the target row (a tutorial's 9.0M-parameter
  Transformer: BLEU 36.52 lower-cased tokenized, test perplexity 5.32); en-de and en-fr follow.
- toy: `gptlab seq2seq train --task T` with its defaults for copy, reverse, sort and add, in a
  child process (timed), then the exact match of greedy decoding on the task's test split.

multi30k and toy use the `seq2seq` command and `gptlab.tasks.seq2seq` (load_seq2seq_run,
encode_pairs, pair_loss, translate_sources, eval_pairs, evaluate_pairs).
"""

from __future__ import annotations

import time

PROCESS_START = time.perf_counter()

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import gptlab
from gptlab.device import resolve_device, resolve_dtype
from gptlab.models.seq2seq import Seq2Seq, Seq2SeqConfig, seq2seq_loss, shift_right

PARTS = ("speed", "multi30k", "toy")
DIRECTIONS = ("de-en", "en-de", "en-fr")
TOY_TASKS = ("copy", "reverse", "sort", "add")
PAD, BOS, EOS = 0, 1, 2
# The tutorial's figures for de-en (its 3-layer, width-256 Transformer, 9.0M parameters, 10 epochs).
TUTORIAL = {"bleu_lc_tok": 36.52, "perplexity": 5.32, "parameters": 9.0e6}
# The Multi30K tutorial's shape, and a tiny one for CPU smoke runs.
SHAPES = {
    "multi30k": dict(n_encoder_layer=3, n_decoder_layer=3, n_embd=256, n_head=8, ff_hidden=512),
    "tiny": dict(n_encoder_layer=1, n_decoder_layer=1, n_embd=32, n_head=4, ff_hidden=64),
}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


# -- speed: gptlab against torch.nn.Transformer in one loop -----------------------------------


class SinusoidalPositions(nn.Module):
    """The fixed sine / cosine position table of Vaswani et al. 2017, 3.5, as the tutorials add it."""

    def __init__(self, max_length: int, width: int):
        super().__init__()
        position = torch.arange(max_length)[:, None]
        frequency = torch.exp(torch.arange(0, width, 2) * (-math.log(10000.0) / width))
        table = torch.zeros(max_length, width)
        table[:, 0::2] = torch.sin(position * frequency)
        table[:, 1::2] = torch.cos(position * frequency)
        self.register_buffer("table", table, persistent=False)

    def forward(self, length: int) -> torch.Tensor:
        return self.table[:length]  # (T, C)


class TorchTransformerSeq2Seq(nn.Module):
    """torch.nn.Transformer between token embeddings (scaled by sqrt(C)) plus sinusoidal positions
    and an output projection tied to the target embeddings: the tutorials' model, in the shape
    and choices of gptlab's (pre-LN, tanh-GELU)."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        C = config.n_embd
        self.scale = math.sqrt(C)
        # Pre-LN encoders cannot take the nested-tensor fast path (inference only anyway).
        warnings.filterwarnings("ignore", message="enable_nested_tensor is True")
        self.src_embed = nn.Embedding(config.src_vocab_size, C)
        self.tgt_embed = nn.Embedding(config.tgt_vocab_size, C)
        self.positions = SinusoidalPositions(config.max_length, C)
        self.transformer = nn.Transformer(
            d_model=C,
            nhead=config.n_head,
            num_encoder_layers=config.n_encoder_layer,
            num_decoder_layers=config.n_decoder_layer,
            dim_feedforward=config.ff_hidden,
            dropout=config.dropout,
            activation=lambda x: F.gelu(x, approximate="tanh"),
            batch_first=True,
            norm_first=config.pre_norm,
        )
        self.drop = nn.Dropout(config.dropout)
        self.lm_head = nn.Linear(C, config.tgt_vocab_size, bias=False)
        self.lm_head.weight = self.tgt_embed.weight

    def forward(self, src, tgt_in, src_mask, tgt_mask=None):
        S, T = src.size(1), tgt_in.size(1)
        source = self.drop(self.src_embed(src) * self.scale + self.positions(S))
        target = self.drop(self.tgt_embed(tgt_in) * self.scale + self.positions(T))
        causal = nn.Transformer.generate_square_subsequent_mask(T, device=src.device)
        padding = ~src_mask  # nn.Transformer masks where True
        x = self.transformer(
            source,
            target,
            tgt_mask=causal,
            src_key_padding_mask=padding,
            memory_key_padding_mask=padding,
            tgt_is_causal=True,
        )
        return self.lm_head(x)


def synthetic_batches(config: Seq2SeqConfig, args, device) -> list[tuple]:
    """`args.batches` batches of (src, src_mask, tgt_in, targets, real tokens): random ids, each row
    of a random length between a third of and `args.seq_len` tokens, EOS last, padded."""
    generator = torch.Generator().manual_seed(args.seed)
    B, L = args.batch_size, args.seq_len
    batches = []
    for _ in range(args.batches):
        rows = []
        for _ in range(2):  # source, then target
            lengths = torch.randint(max(2, L // 3), L + 1, (B,), generator=generator)
            ids = torch.randint(3, config.src_vocab_size, (B, L), generator=generator)
            positions = torch.arange(L)[None, :]
            ids = ids.masked_fill(positions == lengths[:, None] - 1, EOS)
            rows.append(ids.masked_fill(positions >= lengths[:, None], PAD))
        src, tgt = rows
        tgt_in, targets = shift_right(tgt, BOS, PAD)
        real = int((src != PAD).sum() + (tgt != PAD).sum())
        batches.append(tuple(t.to(device) for t in (src, src != PAD, tgt_in, targets)) + (real,))
    return batches


class LoopTrainer:
    """The one training loop both models run: forward under autocast, label-smoothed loss,
    backward, AdamW step."""

    def __init__(self, model: nn.Module, batches, device, compile_: bool):
        self.model = model.to(device).train()
        self.forward = torch.compile(self.model) if compile_ else self.model
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=5e-4, betas=(0.9, 0.98), eps=1e-9,
            fused=device.type == "cuda",
        )  # fmt: skip
        dtype = resolve_dtype("auto", device)
        self.autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
        self.batches, self.device, self.step_count = batches, device, 0

    def step(self) -> None:
        src, src_mask, tgt_in, targets, _ = self.batches[self.step_count % len(self.batches)]
        with self.autocast:
            logits = self.forward(src, tgt_in, src_mask)
        loss = seq2seq_loss(logits, targets, label_smoothing=0.1)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step_count += 1

    def seconds(self, steps: int) -> tuple[float, int]:
        """(seconds, real tokens) of `steps` steps."""
        first = self.step_count
        _sync(self.device)
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        _sync(self.device)
        n = len(self.batches)
        tokens = sum(self.batches[i % n][-1] for i in range(first, first + steps))
        return time.perf_counter() - start, tokens


MODELS = {"gptlab Seq2Seq": Seq2Seq, "torch.nn.Transformer": TorchTransformerSeq2Seq}


def speed(args, device) -> dict:
    config = Seq2SeqConfig(
        src_vocab_size=args.vocab_size, tgt_vocab_size=args.vocab_size, pad_id=PAD, bos_id=BOS,
        eos_id=EOS, dropout=0.1, pre_norm=True, max_length=max(args.seq_len + 1, 128),
        **SHAPES[args.shape],
    )  # fmt: skip
    batches = synthetic_batches(config, args, device)
    counts = {
        name: sum(p.numel() for p in make(config).parameters()) for name, make in MODELS.items()
    }
    print(f"\nspeed: parameters {', '.join(f'{k} {v:,}' for k, v in counts.items())}")
    modes = ["eager", "compiled"] if args.compile else ["eager"]
    trainers, results = {}, {}
    for mode in modes:
        for model_name, make in MODELS.items():
            name = f"{model_name}, {mode}"
            try:
                torch.manual_seed(args.seed)
                trainers[name] = LoopTrainer(make(config), batches, device, mode == "compiled")
                for _ in range(args.warmup):
                    trainers[name].step()
                results[name] = {"model": model_name, "mode": mode}
            except Exception as error:  # a peer that cannot compile is reported, not fatal
                if model_name.startswith("gptlab"):
                    raise
                print(f"  {name}: failed ({type(error).__name__}: {str(error)[:300]})")
                results[name] = {"error": f"{type(error).__name__}: {error}"[:2000]}
                trainers.pop(name, None)
    measured = {name: [] for name in trainers}
    names = list(trainers)
    for rep in range(args.reps):  # taking turns: a busy machine slows all alike
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            measured[name].append(trainers[name].seconds(args.steps))
    for name, values in measured.items():
        results[name].update(
            tokens_per_s=statistics.median(tokens / seconds for seconds, tokens in values),
            step_ms=statistics.median(seconds / args.steps * 1e3 for seconds, _ in values),
        )
    dtype = "bf16 autocast" if resolve_dtype("auto", device) != torch.float32 else "float32"
    print(
        f"\ntraining step, {args.shape} shape, batch {args.batch_size} x up to {args.seq_len} "
        f"source and target tokens, vocabulary {args.vocab_size:,}, {device} ({dtype}); "
        f"median of {args.reps} x {args.steps} steps after {args.warmup} of warm-up; "
        "ratio = gptlab's tokens/s over this row's, in the same mode:"
    )
    print("| model | parameters | tokens/s | ms/step | ratio |")
    print("|---|---:|---:|---:|---:|")
    speedups = {}
    for name, r in results.items():
        model_name = name.rsplit(", ", 1)[0]
        if "tokens_per_s" not in r:
            print(f"| {name} | {counts[model_name]:,} | failed | | |")
            continue
        ours = results[f"gptlab Seq2Seq, {r['mode']}"]
        ratio = ours["tokens_per_s"] / r["tokens_per_s"]
        if not model_name.startswith("gptlab"):
            speedups[r["mode"]] = ratio
        print(
            f"| {name} | {counts[model_name]:,} | {r['tokens_per_s']:,.0f} | {r['step_ms']:.2f} | "
            f"{ratio:.2f} |"
        )
    for mode, ratio in speedups.items():
        print(f"{mode}: gptlab {ratio:.2f}x torch.nn.Transformer's tokens/s (target >= 1.2 on GPU)")
    return {
        "shape": args.shape, "batch": [args.batch_size, args.seq_len], "dtype": dtype,
        "parameters": counts, "results": results, "speedup": speedups,
    }  # fmt: skip


# -- multi30k and toy: the seq2seq command, then this process evaluates its run --------------


def seq2seq_api():
    """The pieces of `gptlab.tasks.seq2seq` these parts use, or one message saying what is missing."""
    try:
        from gptlab.tasks import seq2seq as task
    except ImportError as error:
        raise SystemExit(f"multi30k and toy need gptlab.tasks.seq2seq ({error})") from None
    needed = ("load_seq2seq_run", "encode_pairs", "pair_loss", "translate_sources", "eval_pairs")
    missing = [name for name in needed if not hasattr(task, name)]
    if missing:
        raise SystemExit(f"gptlab.tasks.seq2seq lacks {', '.join(missing)}: update this benchmark")
    return task


def train_run(argv: list[str], run: Path, log: Path) -> float:
    """`gptlab seq2seq train ARGV --out RUN` in a child process; its wall time in seconds."""
    env = dict(os.environ)
    source_root = str(Path(gptlab.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "gptlab", "seq2seq", "train", *argv, "--out", str(run)]
    start = time.perf_counter()
    with open(log, "w") as file:
        status = subprocess.run(command, stdout=file, stderr=subprocess.STDOUT, env=env).returncode
    seconds = time.perf_counter() - start
    if status:
        tail = "\n    ".join(log.read_text(errors="replace").strip().splitlines()[-5:])
        raise SystemExit(f"gptlab {' '.join(command[3:])} failed (exit {status}):\n    {tail}")
    return seconds


def translations(task, model, tgt_tokenizer, sources, beams: int, args, device) -> tuple:
    """(hypotheses, seconds) of translating every source with `beams` beams (1: greedy)."""
    _sync(device)
    start = time.perf_counter()
    hypotheses = task.translate_sources(
        model, tgt_tokenizer, sources, num_beams=beams, batch_size=args.eval_batch_size,
        device=device,
    )  # fmt: skip
    _sync(device)
    return hypotheses, time.perf_counter() - start


def multi30k(args, device, folder: Path) -> list[dict]:
    from gptlab.data.parallel import load_multi30k
    from gptlab.evaluation import bleu, chrf, lowercase_tokenized_bleu

    task = seq2seq_api()
    rows = []
    for direction in args.directions:
        src, tgt = direction.split("-")
        run = folder / f"multi30k-{direction}"
        argv = ["--task", "multi30k", "--src", src, "--tgt", tgt, "--device", args.device]
        train_seconds = train_run([*argv, *args.train_args], run, folder / f"{run.name}.log")
        model, src_tokenizer, tgt_tokenizer, _ = task.load_seq2seq_run(run, device)
        pairs = load_multi30k(src, tgt, "test")[: args.test_limit]
        sources, targets = task.encode_pairs(pairs, src_tokenizer, tgt_tokenizer)
        with torch.no_grad():
            loss, _ = task.pair_loss(
                model, sources, targets, tgt_tokenizer, src_tokenizer.pad_id,
                args.eval_batch_size, device,
            )  # fmt: skip
        references = [target for _, target in pairs]
        row = {
            "direction": direction, "parameters": model.num_params(),
            "train_seconds": train_seconds, "test_loss": loss, "test_perplexity": math.exp(loss),
            "sentences": len(pairs),
        }  # fmt: skip
        for beams in (1, args.beam):
            hypotheses, seconds = translations(
                task, model, tgt_tokenizer, sources, beams, args, device
            )
            scores = {  # sacrebleu only: the GPU machine may lack rouge-score
                **bleu(hypotheses, references),
                **lowercase_tokenized_bleu(hypotheses, references),
                **chrf(hypotheses, references),
            }
            row[f"beam{beams}"] = {**scores, "seconds": seconds, "examples": hypotheses[:3]}
        rows.append(row)
        greedy = row["beam1"]
        print(
            f"  {direction}: {row['parameters']:,} parameters, trained in {train_seconds:.0f} s, "
            f"test perplexity {row['test_perplexity']:.2f}, greedy BLEU (lc, tok) "
            f"{greedy['bleu_lc_tok']:.2f}",
            flush=True,
        )
    print(
        f"\nMulti30K test_2016_flickr ({rows[0]['sentences']:,} sentences), {device}; BLEU "
        "(lc, tok) = lower-cased 13a-tokenized as the tutorials, sacreBLEU = detokenized cased; "
        "train s = the `seq2seq train` command's wall time (start-up, vocabulary, training, "
        "validation); decode s = translating the test set:"
    )
    print(
        "| direction | decoding | parameters | train s | test ppl | BLEU (lc, tok) | sacreBLEU "
        "| chrF | decode s | vs greedy |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    if "de-en" in args.directions:
        print(
            f"| de-en | tutorial (reference) | {TUTORIAL['parameters'] / 1e6:.1f}M | | "
            f"{TUTORIAL['perplexity']:.2f} | {TUTORIAL['bleu_lc_tok']:.2f} | | | | |"
        )
    for row in rows:
        for beams in (1, args.beam):
            r = row[f"beam{beams}"]
            name = "greedy" if beams == 1 else f"beam {beams}"
            ratio = r["seconds"] / row["beam1"]["seconds"]
            print(
                f"| {row['direction']} | {name} | {row['parameters'] / 1e6:.2f}M | "
                f"{row['train_seconds']:.0f} | {row['test_perplexity']:.2f} | "
                f"{r['bleu_lc_tok']:.2f} | {r['bleu']:.2f} | {r['chrf']:.2f} | "
                f"{r['seconds']:.1f} | {ratio:.2f}x |"
            )
    print(f"sacreBLEU signature: {rows[0]['beam1']['bleu_signature']}")
    print(f"lower-cased tokenized BLEU signature: {rows[0]['beam1']['bleu_lc_tok_signature']}")
    return rows


def toy(args, device, folder: Path) -> list[dict]:
    task = seq2seq_api()
    rows = []
    for name in args.toy_tasks:
        run = folder / f"toy-{name}"
        argv = ["--task", name, "--device", args.device, *args.toy_args]
        train_seconds = train_run(argv, run, folder / f"{run.name}.log")
        model, src_tokenizer, tgt_tokenizer, config = task.load_seq2seq_run(run, device)
        pairs = task.eval_pairs(config, "test")
        sources, _ = task.encode_pairs(pairs, src_tokenizer, tgt_tokenizer)
        hypotheses, seconds = translations(task, model, tgt_tokenizer, sources, 1, args, device)
        matches = sum(h.split() == target.split() for h, (_, target) in zip(hypotheses, pairs))
        rows.append(
            {"task": name, "parameters": model.num_params(), "train_seconds": train_seconds,
             "exact_match": matches / len(pairs), "test_sequences": len(pairs),
             "decode_seconds": seconds}
        )  # fmt: skip
        print(f"  {name}: exact match {matches / len(pairs):.2%} in {train_seconds:.0f} s")
    print(f"\ntoy tasks, each trained with its defaults on {device}; greedy exact match on test:")
    print("| task | parameters | train s | test sequences | exact match |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['task']} | {r['parameters']:,} | {r['train_seconds']:.0f} | "
            f"{r['test_sequences']:,} | {r['exact_match']:.2%} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--only", default=",".join(PARTS), help=f"comma-separated parts: {', '.join(PARTS)}")
    add("--device", default="auto")
    add("--compile", action="store_true", help="speed: compiled rows of both models too")
    add("--shape", choices=SHAPES, help="speed: model shape (default multi30k; quick tiny)")
    add("--vocab-size", type=int, help="speed: vocabulary (default 10000; quick 100)")
    add("--batch-size", type=int, help="speed: sentence pairs a batch (default 128; quick 4)")
    add("--seq-len", type=int, help="speed: longest source or target (default 32; quick 12)")
    add("--batches", type=int, default=8, help="speed: distinct batches, cycled (default 8)")
    add("--warmup", type=int, help="speed: steps before timing (default 10; quick 2)")
    add("--steps", type=int, help="speed: steps a repetition (default 20; quick 2)")
    add("--reps", type=int, help="speed: repetitions (default 7; quick 3)")
    add("--seed", type=int, default=1337)
    add("--directions", default=",".join(DIRECTIONS), help="multi30k: comma-separated SRC-TGT")
    add("--beam", type=int, default=5, help="multi30k: the beam width timed against greedy")
    add(
        "--train-args",
        dest="train_args_extra",
        default="",
        help="multi30k: more `seq2seq train` flags, one string",
    )
    add("--toy-tasks", default=",".join(TOY_TASKS), help="toy: comma-separated tasks")
    add("--toy-args", default="", help="toy: more `seq2seq train` flags, one string")
    add("--test-limit", type=int, help="multi30k: the first N test sentences (default all)")
    add("--eval-batch-size", type=int, default=128, help="multi30k, toy: decoding batch")
    add("--keep", metavar="DIR", help="keep the runs and their logs here")
    add("--quick", action="store_true", help="a smoke run: tiny shapes, few steps, CPU minutes")
    add("--report-json", metavar="PATH", help="write every figure here")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    if parts - set(PARTS):
        raise SystemExit(f"--only: unknown part(s) {', '.join(sorted(parts - set(PARTS)))}")
    args.directions = args.directions.split(",")
    if set(args.directions) - set(DIRECTIONS):
        raise SystemExit(f"--directions: choose from {', '.join(DIRECTIONS)}")
    args.toy_tasks = args.toy_tasks.split(",")
    if set(args.toy_tasks) - set(TOY_TASKS):
        raise SystemExit(f"--toy-tasks: choose from {', '.join(TOY_TASKS)}")
    quick = args.quick
    args.shape = args.shape or ("tiny" if quick else "multi30k")
    args.vocab_size = args.vocab_size or (100 if quick else 10_000)
    args.batch_size = args.batch_size or (4 if quick else 128)
    args.seq_len = args.seq_len or (12 if quick else 32)
    args.warmup = args.warmup if args.warmup is not None else (2 if quick else 10)
    args.steps = args.steps or (2 if quick else 20)
    args.reps = args.reps or (3 if quick else 7)
    quick_training = ["--max-iters", "3", "--eval-iters", "2"] if quick else []
    quick_model = (
        ["--n-encoder-layer", "1", "--n-decoder-layer", "1", "--n-embd", "32", "--n-head", "2",
         "--ff-hidden", "64", "--vocab-size", "1000"]
        if quick
        else []
    )  # fmt: skip
    args.train_args = ["--no-tensorboard", *quick_training, *quick_model]
    args.train_args += shlex.split(args.train_args_extra)
    args.toy_args = ["--no-tensorboard", *quick_training, *shlex.split(args.toy_args)]
    if quick and args.test_limit is None:
        args.test_limit = 16
    device = resolve_device(args.device)
    args.device = str(device)
    print(
        f"device {device}; torch {torch.__version__}; parts {', '.join(p for p in PARTS if p in parts)}",
        flush=True,
    )
    report = {"device": str(device), "torch": torch.__version__}
    if "speed" in parts:
        report["speed"] = speed(args, device)
    with tempfile.TemporaryDirectory(prefix="seq2seq-bench-") as scratch:
        folder = Path(args.keep or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        if "multi30k" in parts:
            report["multi30k"] = multi30k(args, device, folder)
        if "toy" in parts:
            report["toy"] = toy(args, device, folder)
    if args.report_json:
        Path(args.report_json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nprocess wall time: {time.perf_counter() - PROCESS_START:.1f} s")


if __name__ == "__main__":
    main()
