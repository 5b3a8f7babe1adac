"""Induction heads forming during training, with the bump in the loss (Olsson et al. 2022).

Trains a 2-layer and a 1-layer GPT on TinyShakespeare with the same data, schedule and seed,
and every few steps scores every head on random tokens repeated twice (`gptlab.interpret.heads`).
An induction head needs a previous-token head in an earlier layer, so the 2-layer model can grow
one and the 1-layer model cannot; when the 2-layer model's does form, its induction score jumps
and the loss curve shows a bump (a plateau, then a faster fall) at the same steps.

    PYTHONPATH=src GPTLAB_DATA=devdata python3 benchmarks/induction.py            # GPU, minutes
    GPTLAB_DATA=../shared/data uv run python benchmarks/induction.py --quick      # CPU smoke run

Writes docs/figures/induction.png (loss and induction score against the step, both models) and
docs/figures/induction-heads.png (each head's scores at the end of the 2-layer run), and prints
the step at which each model's highest induction score first reaches --threshold. The models
are attention-only by default, the paper's cleanest setting (their MLPs replaced by zero, from
outside the model code); --with-mlp trains standard GPT blocks.

The unembedding is untied from the token embedding (Olsson et al.'s models have their own W_U;
--tied keeps GPT-2's tying). This matters: an attention-only model whose unembedding is the
embedding's transpose grows neither previous-token nor induction heads, even on random
sequences repeated with a varying period, the easiest induction task there is: its direct path
is W_E W_E^T, which predicts the current token again, and every head's output is read through
that same matrix. Untied, the same model on the same task forms an induction head within 400
steps (see docs/interpret.md).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

from gptlab.config import GPTConfig
from gptlab.data.sources import resolve
from gptlab.data.text import TokenData, batch_seed
from gptlab.device import resolve_device
from gptlab.interpret.heads import HeadScoreRecorder, first_crossing, head_scores_figure
from gptlab.models.gpt import GPT
from gptlab.training.config import TrainConfig
from gptlab.training.trainer import Callback, Trainer
from gptlab.viz.figure import new_figure, save_png

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"

# The GPU job: a few thousand steps of a small model, minutes on one GPU. The cpu job: a smaller
# model, tens of minutes on a laptop. The quick job: a smoke test of the whole script.
JOBS = {
    "gpu": dict(
        model=dict(n_head=8, n_embd=256, context_length=256),
        train=dict(max_iters=6000, batch_size=64, eval_iters=20, eval_interval=250),
        every=25,
        length=40,
    ),
    "cpu": dict(
        model=dict(n_head=4, n_embd=64, context_length=64),
        train=dict(max_iters=2000, batch_size=16, eval_iters=4, eval_interval=250),
        every=50,
        length=24,
    ),
    "quick": dict(
        model=dict(n_head=4, n_embd=32, context_length=32),
        train=dict(max_iters=150, batch_size=8, eval_iters=2, eval_interval=50),
        every=25,
        length=16,
    ),
}


class NoMLP(nn.Module):
    """Stands in for a block's MLP: writes nothing to the residual stream."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def attention_only(model: GPT) -> GPT:
    """The model with every MLP replaced by `NoMLP` (and its now unused LayerNorm frozen)."""
    for block in model.h:
        block.mlp = NoMLP()
        block.ln_2.requires_grad_(False)
    return model


def untie(model: GPT) -> GPT:
    """Give the model an unembedding of its own, initialised as the embedding is (GPT-2 ties
    lm_head.weight to wte.weight)."""
    weight = torch.empty_like(model.wte.weight)
    nn.init.normal_(weight, mean=0.0, std=0.02)
    model.lm_head.weight = nn.Parameter(weight)
    return model


class RepeatedSequences:
    """The easiest induction task, as a check of the whole experiment: windows of random tokens
    that repeat with a period drawn per batch (so no fixed offset solves it, only looking up
    what followed the current token last time). The data object `train_one` expects."""

    def __init__(self, vocab_size: int, shortest: int = 6, longest: int = 30):
        self.vocab_size, self.shortest, self.longest = vocab_size, shortest, longest

    def windows(self, seed: int, batch_size: int, block_size: int, device):
        generator = torch.Generator().manual_seed(seed)
        period = int(torch.randint(self.shortest, self.longest + 1, (1,), generator=generator))
        once = torch.randint(self.vocab_size, (batch_size, period), generator=generator)
        tokens = once.repeat(1, block_size // period + 2)[:, : block_size + 1]  # (B, T+1)
        return tokens[:, :-1].to(device), tokens[:, 1:].to(device)

    def train_batch(self, step, index, batch_size, block_size, seed, device):
        return self.windows(batch_seed(seed, step, index), batch_size, block_size, device)

    def eval_batches(self, split, batch_size, block_size, num_batches, device):
        first = {"train": 10**9, "val": 2 * 10**9}[split]  # seeds training never draws
        return (self.windows(first + i, batch_size, block_size, device) for i in range(num_batches))


class WithRepeats:
    """TinyShakespeare windows in which one earlier passage of each row comes back, as names and
    phrases do in web text: a span of `shortest` to `longest` tokens from the window's first half
    is copied over a later place. Only a model that looks the passage up (an induction head) can
    predict the copy; the rest of the window is Shakespeare as written."""

    def __init__(self, data: TokenData, shortest: int = 8, longest: int = 32):
        self.data, self.shortest, self.longest = data, shortest, longest

    def with_repeats(self, x, y, seed: int):
        tokens = torch.cat([x, y[:, -1:]], dim=1).clone()  # (B, T+1)
        B, T1 = tokens.shape
        generator = torch.Generator().manual_seed(seed)
        for row in range(B):
            length = int(torch.randint(self.shortest, self.longest + 1, (1,), generator=generator))
            length = min(length, T1 // 4)
            start = int(torch.randint(0, T1 // 2 - length + 1, (1,), generator=generator))
            lowest = start + length  # the copy comes after the passage ends
            where = int(torch.randint(lowest, T1 - length + 1, (1,), generator=generator))
            tokens[row, where : where + length] = tokens[row, start : start + length].clone()
        return tokens[:, :-1], tokens[:, 1:]

    def train_batch(self, step, index, batch_size, block_size, seed, device):
        x, y = self.data.train_batch(step, index, batch_size, block_size, seed, device)
        return self.with_repeats(x, y, batch_seed(seed, step, index))

    def eval_batches(self, split, batch_size, block_size, num_batches, device):
        batches = self.data.eval_batches(split, batch_size, block_size, num_batches, device)
        return (self.with_repeats(x, y, 3 * 10**9 + i) for i, (x, y) in enumerate(batches))


class LossLog(Callback):
    """The train loss at every log, and the validation loss at every evaluation."""

    def __init__(self):
        self.train: list[tuple[int, float]] = []
        self.val: list[tuple[int, float]] = []

    def on_log(self, trainer, metrics):
        self.train.append((metrics["step"], metrics["loss"]))

    def on_eval_end(self, trainer, metrics, improved):
        self.val.append((metrics["step"], metrics["loss"]))


class InContextScore(Callback):
    """Olsson et al.'s in-context learning score every `every` steps: the loss on the last
    eighth of each window minus the loss on positions T/16..T/8, on fixed validation windows.
    The more the model uses its context, the more negative; induction heads make it fall."""

    def __init__(self, batch: tuple[torch.Tensor, torch.Tensor], every: int):
        self.x, self.y = batch
        self.every = every
        self.history: list[tuple[int, float]] = []

    @torch.no_grad()
    def record(self, trainer) -> None:
        model = trainer.raw_model
        model.eval()
        logits, _ = model(self.x, all_logits=True)  # (B, T, V)
        losses = torch.nn.functional.cross_entropy(
            logits.float().transpose(1, 2), self.y, reduction="none"
        )  # (B, T)
        T = losses.size(1)
        late, early = losses[:, 7 * T // 8 :].mean(), losses[:, T // 16 : T // 8].mean()
        self.history.append((trainer.step, float(late - early)))
        model.train()

    def on_train_begin(self, trainer) -> None:
        self.record(trainer)

    def on_step_end(self, trainer, metrics) -> None:
        if trainer.step % self.every == 0:
            self.record(trainer)

    def on_train_end(self, trainer) -> None:
        if self.history[-1][0] != trainer.step:
            self.record(trainer)


def train_one(n_layer, args, job, data, vocab_size, common, device) -> dict:
    torch.manual_seed(args.seed)
    config = GPTConfig(n_layer=n_layer, vocab_size=vocab_size, dropout=0.0, **job["model"])
    model = GPT(config)
    if not args.with_mlp:
        attention_only(model)
    if not args.tied:
        untie(model)
    train = dict(job["train"])
    if args.steps:
        train["max_iters"] = args.steps
    tc = TrainConfig(
        **train,
        lr=args.lr,
        min_lr=args.lr / 10,
        warmup_iters=min(100, train["max_iters"] // 10),
        weight_decay=0.1,
        log_interval=5,
        device=str(device),
        seed=args.seed,
    )
    block = config.context_length
    scores = HeadScoreRecorder(
        every=job["every"], length=job["length"], batch=16, seed=args.seed, vocab=common
    )
    losses = LossLog()
    windows = next(iter(data.eval_batches("val", 32, block, 1, device)))
    in_context = InContextScore(windows, job["every"])
    trainer = Trainer(
        model,
        tc,
        train_batch=lambda step, index: data.train_batch(
            step, index, tc.batch_size, block, tc.seed, device
        ),
        eval_batches=lambda: data.eval_batches("val", tc.batch_size, block, tc.eval_iters, device),
        device=device,
        callbacks=[scores, losses, in_context],
    )
    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start
    steps, best = scores.max_scores("induction")
    crossing = first_crossing(steps, best, args.threshold)
    final = scores.history[-1][1]
    layer, head, value = final.best("induction")
    print(
        f"{n_layer}-layer: {seconds:.0f} s, final val loss {losses.val[-1][1]:.3f}, "
        f"max induction score {value:.3f} (layer {layer}, head {head}), "
        f"reaches {args.threshold} at step {crossing}",
        flush=True,
    )
    return {
        "n_layer": n_layer,
        "seconds": seconds,
        "train_loss": losses.train,
        "val_loss": losses.val,
        "score_steps": steps,
        "max_induction": best,
        "max_previous_token": scores.max_scores("previous_token")[1],
        "crossing_step": crossing,
        "in_context": in_context.history,
        "final_scores": final,
    }


def common_tokens(tokens, vocab_size: int, share: float = 1e-4) -> torch.Tensor:
    """The ids that make up at least `share` of the training text: the random sequences are
    drawn from these, whose embeddings training has shaped (as Olsson et al. draw from the
    tokens their models know)."""
    counts = torch.bincount(torch.from_numpy(tokens[:].astype("int64")), minlength=vocab_size)
    return torch.nonzero(counts >= share * counts.sum()).flatten()


def smoothed(values: list[float], window: int = 9) -> list[float]:
    """A centred moving average (the train loss of one batch is noisy)."""
    half = window // 2
    return [
        sum(values[max(0, i - half) : i + half + 1]) / len(values[max(0, i - half) : i + half + 1])
        for i in range(len(values))
    ]


def induction_figure(results: list[dict], threshold: float, title: str):
    figure = new_figure(10, 9)
    loss_axes, context_axes, score_axes = figure.subplots(3, 1, sharex=True)
    colours = {2: "tab:blue", 1: "tab:orange"}
    for r in results:
        colour = colours.get(r["n_layer"], "tab:gray")
        steps, losses = zip(*r["train_loss"], strict=True)
        loss_axes.plot(steps, smoothed(list(losses)), color=colour, label=f"{r['n_layer']}-layer")
        score_axes.plot(
            r["score_steps"], r["max_induction"], color=colour, label=f"{r['n_layer']}-layer"
        )
        steps, scores = zip(*r["in_context"], strict=True)
        context_axes.plot(steps, scores, color=colour, label=f"{r['n_layer']}-layer")
        if r["crossing_step"] is not None:
            for axes in (loss_axes, context_axes, score_axes):
                axes.axvline(r["crossing_step"], color=colour, linestyle=":", linewidth=1.5)
            score_axes.annotate(
                f"step {r['crossing_step']}",
                (r["crossing_step"], threshold),
                xytext=(6, -14),
                textcoords="offset points",
                color=colour,
            )
    score_axes.axhline(threshold, color="gray", linestyle="--", linewidth=1, label="threshold")
    loss_axes.set_ylabel("train loss (smoothed)")
    loss_axes.legend()
    loss_axes.grid(alpha=0.3)
    context_axes.set_ylabel("in-context learning score\n(late loss - early loss)")
    context_axes.grid(alpha=0.3)
    score_axes.set_ylabel("highest induction score")
    score_axes.set_xlabel("training step")
    score_axes.set_ylim(0, 1)
    score_axes.legend()
    score_axes.grid(alpha=0.3)
    figure.suptitle(title)
    return figure


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--job", choices=list(JOBS), default="gpu", help="model and schedule")
    parser.add_argument("--quick", action="store_true", help="the smoke job (--job quick)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=None, help="override the job's steps")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--threshold", type=float, default=0.3, help="induction score to reach")
    parser.add_argument(
        "--data",
        choices=["shakespeare", "shakespeare-repeats", "repeated"],
        default="shakespeare",
        help="TinyShakespeare; TinyShakespeare with one earlier passage of each window copied "
        "later in it; or random tokens repeated with a varying period (the check)",
    )
    parser.add_argument("--repeated-vocab", type=int, default=64, help="repeated: vocabulary")
    parser.add_argument("--tokenizer", choices=["char", "gpt2"], default="char")
    parser.add_argument("--with-mlp", action="store_true", help="standard blocks, MLPs kept")
    parser.add_argument(
        "--tied", action="store_true", help="keep the unembedding tied to the embedding"
    )
    parser.add_argument("--out-dir", default=str(FIGURES), help="where the figures go")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()

    name = "quick" if args.quick else args.job
    device = resolve_device("cpu" if name != "gpu" and args.device == "auto" else args.device)
    job = JOBS[name]
    kind = "attention-only" if not args.with_mlp else "standard"
    kind += ", tied unembedding" if args.tied else ", untied unembedding"
    if args.data == "repeated":
        vocab_size = args.repeated_vocab
        data, common = RepeatedSequences(vocab_size), torch.arange(vocab_size)
        corpus, suffix = f"repeated random tokens (vocab {vocab_size})", "-repeated"
    else:
        text = resolve("tinyshakespeare")
        if args.tokenizer == "char":
            from gptlab.tokenizers import CharTokenizer

            tokenizer = CharTokenizer.from_text(text.read_text())
        else:
            from gptlab.tokenizers import GPT2Tokenizer

            tokenizer = GPT2Tokenizer.from_pretrained("gpt2")  # through the data registry
        data, vocab_size = TokenData.from_file(text, tokenizer), tokenizer.vocab_size
        common = common_tokens(data.train, vocab_size)
        corpus, suffix = f"TinyShakespeare ({args.tokenizer}, vocab {vocab_size})", ""
        if args.data == "shakespeare-repeats":
            data = WithRepeats(data)
            corpus, suffix = f"{corpus} with a passage repeated a window", "-repeats"
    print(
        f"{corpus}, {kind} models, {job['model']}, device {device}, torch {torch.__version__}",
        flush=True,
    )
    results = [train_one(n, args, job, data, vocab_size, common, device) for n in (2, 1)]

    out = Path(args.out_dir)
    title = (
        f"{kind} GPTs on {corpus}, {name} job:\nloss and the highest induction score, "
        "2 layers against 1"
    )
    figure = induction_figure(results, args.threshold, title)
    print(f"wrote {save_png(figure, out / f'induction{suffix}.png')}")
    heads = head_scores_figure(results[0]["final_scores"])
    print(f"wrote {save_png(heads, out / f'induction-heads{suffix}.png')}")

    print(
        f"\n| model | seconds | final val loss | max induction score | step reaching "
        f"{args.threshold} | in-context score |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['n_layer']}-layer | {r['seconds']:.0f} | {r['val_loss'][-1][1]:.3f} | "
            f"{r['max_induction'][-1]:.3f} | {r['crossing_step']} | {r['in_context'][-1][1]:.3f} |"
        )
    if args.json:
        summary = [
            {k: v for k, v in r.items() if k != "final_scores"}
            | {"final_scores": r["final_scores"].to_dict()}
            for r in results
        ]
        Path(args.json).write_text(json.dumps(summary))


if __name__ == "__main__":
    main()
