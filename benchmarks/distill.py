"""Knowledge distillation on TinyShakespeare (characters): does a teacher's soft targets make a
half-depth student better than the same student trained on the labels alone?

A teacher of the `shakespeare-char` preset's shape (6 x 384) is trained first (or read from
--teacher RUN). Then four students with half its layers, each for the same steps on the same
batches, from the same seed:

- scratch: random init, cross-entropy on the labels (what `gptlab train` does);
- distilled: random init, alpha * KL(teacher || student at temperature T) * T^2 + (1 - alpha) * CE;
- layer init: initialised from the teacher's embeddings and every other block, CE only;
- layer init + distilled: both (DistilGPT2's recipe).

The table gives each model's best validation loss (the checkpoint `gptlab` would keep), the
share of the teacher-student gap that a student closes, (scratch - student) / (scratch - teacher)
(the issue's target: >= 0.5 for the distilled student), and greedy decode speed, batch 1, of
each student against the teacher.

    PYTHONPATH=src python3 benchmarks/distill.py --compile            # GPU, a few minutes
    PYTHONPATH=src python3 benchmarks/distill.py --teacher runs/shakespeare --compile
    GPTLAB_DATA=../shared/data uv run python benchmarks/distill.py --quick   # CPU smoke test

--quick trains the small CPU preset's shape (4 x 128, context 64) for a few hundred steps: a
check that everything runs, not a result.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from gptlab.commands.train import JOB_DEFAULTS
from gptlab.config import GPTConfig
from gptlab.data.sources import resolve
from gptlab.data.text import TokenData
from gptlab.device import resolve_device
from gptlab.distillation import DistillConfig, distill_loss_fn, init_from_teacher
from gptlab.generation import Decoder, GenerationConfig, generate
from gptlab.models.gpt import GPT
from gptlab.tokenizers import CharTokenizer
from gptlab.training.config import TrainConfig
from gptlab.training.trainer import Callback, Trainer, default_loss

# (teacher preset, train settings). 50 evaluation batches of 64 x 256 windows, spread evenly,
# already cover the 111k-character validation split several times over (nanoGPT's 200 would add
# a minute of evaluation to each of the five runs).
JOBS = {
    "gpu": ("shakespeare-char", dict(max_iters=5000, batch_size=64, eval_iters=50, eval_interval=250)),
    "quick": ("shakespeare-char-cpu", dict(max_iters=300, batch_size=12, eval_iters=10, eval_interval=100)),
}  # fmt: skip


class BestWeights(Callback):
    """Keeps a copy of the weights of the best evaluation (the checkpoint a run would keep)."""

    def __init__(self):
        self.state = None

    def on_eval_end(self, trainer, metrics, improved):
        if improved:
            self.state = {k: v.detach().clone() for k, v in trainer.raw_model.state_dict().items()}


def train(name, model, loss_fn, data, config: TrainConfig, device) -> float:
    """Train `model` in place (ending on its best weights); returns the best validation loss."""
    block = model.config.context_length
    best = BestWeights()
    trainer = Trainer(
        model,
        config,
        train_batch=lambda step, index: data.train_batch(
            step, index, config.batch_size, block, config.seed, device
        ),
        eval_batches=lambda: data.eval_batches(
            "val", config.batch_size, block, config.eval_iters, device
        ),
        device=device,
        loss_fn=loss_fn,
        eval_loss_fn=default_loss,  # every model is judged by its own cross-entropy
        callbacks=[best],
    )
    start = time.perf_counter()
    trainer.fit()
    model.load_state_dict(best.state)
    print(
        f"  {name}: best val loss {trainer.best_metric:.4f} "
        f"({time.perf_counter() - start:.0f} s, {trainer.step} steps)",
        flush=True,
    )
    return trainer.best_metric


@torch.no_grad()
def val_loss(model, data, config: TrainConfig, device) -> float:
    model.eval()
    block = model.config.context_length
    losses = [
        model(x, y)[1].item()
        for x, y in data.eval_batches("val", config.batch_size, block, config.eval_iters, device)
    ]
    return sum(losses) / len(losses)


def decode_speed(model, device, new_tokens: int, compile: bool, repeats: int = 3) -> float:
    """Greedy new tokens per second, batch 1, after a newline prompt (median of `repeats`)."""
    model.eval()
    config = GenerationConfig(max_new_tokens=new_tokens, strategy="greedy", stop_at_eos=False)
    decoder = Decoder(model, compile=compile, cache_length=model.config.context_length)
    generate(model, [[0]], config, decoder=decoder)  # warm-up (and compilation)
    speeds = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        generate(model, [[0]], config, decoder=decoder)
        if device.type == "cuda":
            torch.cuda.synchronize()
        speeds.append(new_tokens / (time.perf_counter() - start))
    return statistics.median(speeds)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small shapes and steps, for a CPU")
    parser.add_argument(
        "--teacher", metavar="RUN", help="a trained teacher run (else trained here)"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile training steps")
    parser.add_argument("--max-iters", type=int, help="steps of each run (default: the job's)")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--save-teacher", metavar="DIR", help="write the trained teacher's run")
    args = parser.parse_args()

    device = resolve_device(args.device)
    preset, job = JOBS["quick" if args.quick else "gpu"]
    if args.max_iters:
        job["max_iters"] = args.max_iters
    config = TrainConfig(
        **job,
        lr=1e-3,
        min_lr=1e-4,
        warmup_iters=100,
        weight_decay=JOB_DEFAULTS[preset].get("weight_decay", TrainConfig.weight_decay),
        log_interval=50,
        device=str(device),
        compile=args.compile,
        seed=args.seed,
    )
    text_path = resolve("tinyshakespeare")
    if args.teacher:
        from gptlab.pretrained import load_model

        teacher, tokenizer, _ = load_model(args.teacher, device, task="lm")
    else:
        tokenizer = CharTokenizer.from_text(text_path.read_text())
        torch.manual_seed(args.seed)
        teacher = GPT(GPTConfig.from_preset(preset, vocab_size=tokenizer.vocab_size))
    data = TokenData.from_file(text_path, tokenizer)
    student_config = GPTConfig(
        **{**teacher.config.to_dict(), "n_layer": max(1, teacher.config.n_layer // 2)}
    )
    distill = DistillConfig(alpha=args.alpha, temperature=args.temperature)
    print(
        f"teacher {teacher.config.n_layer} x {teacher.config.n_embd} "
        f"({teacher.num_params() / 1e6:.2f}M), students {student_config.n_layer} layers; "
        f"{config.max_iters} steps of {config.batch_size} x {teacher.config.context_length} "
        f"characters each; alpha {distill.alpha}, T {distill.temperature}; device {device}, "
        f"compile {config.compile}, torch {torch.__version__}",
        flush=True,
    )

    losses = {}
    if args.teacher:
        losses["teacher"] = val_loss(teacher.to(device), data, config, device)
        print(f"  teacher ({args.teacher}): val loss {losses['teacher']:.4f}", flush=True)
    else:
        losses["teacher"] = train("teacher", teacher, default_loss, data, config, device)
        if args.save_teacher:
            save_run(teacher, tokenizer, config, args.save_teacher)
    teacher.eval()
    teacher_step = torch.compile(teacher) if args.compile else teacher
    soft = distill_loss_fn(teacher_step, distill)

    students = {}
    for name, loss_fn, from_teacher in [
        ("scratch", default_loss, False),
        ("distilled", soft, False),
        ("layer init", default_loss, True),
        ("layer init + distilled", soft, True),
    ]:
        torch.manual_seed(args.seed)
        student = GPT(student_config)
        if from_teacher:
            init_from_teacher(student, teacher)
        losses[name] = train(name, student, loss_fn, data, config, device)
        students[name] = student

    new_tokens = min(200, teacher.config.context_length - 1)
    speeds = {"teacher": decode_speed(teacher, device, new_tokens, args.compile)}
    speeds["student"] = decode_speed(students["distilled"], device, new_tokens, args.compile)

    gap = losses["scratch"] - losses["teacher"]
    print("\n| model | layers | val loss | gap closed | decode tok/s |")
    print("|---|---:|---:|---:|---:|")
    for name, loss in losses.items():
        layers = teacher.config.n_layer if name == "teacher" else student_config.n_layer
        closed = "" if name in ("teacher", "scratch") else f"{(losses['scratch'] - loss) / gap:.2f}"
        speed = speeds["teacher"] if name == "teacher" else speeds["student"]
        print(f"| {name} | {layers} | {loss:.4f} | {closed} | {speed:,.0f} |")
    print(
        f"\nstudent / teacher decode speed: {speeds['student'] / speeds['teacher']:.2f}x "
        f"(greedy, batch 1, {new_tokens} new tokens); the issue's target: the distilled student "
        f"closes >= 0.5 of the gap: {(losses['scratch'] - losses['distilled']) / gap:.2f}"
    )


def save_run(model, tokenizer, config: TrainConfig, out: str) -> None:
    """The trained teacher as a run directory (for `gptlab distill --teacher`, docs figures)."""
    from pathlib import Path

    from gptlab.runs import write_run_config
    from gptlab.training.checkpoint import MODEL_FILE, TOKENIZER_DIR, save_weights

    run_dir = Path(out)
    run_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save(run_dir / TOKENIZER_DIR)
    write_run_config(
        run_dir,
        model.config,
        config.to_dict(),
        {"data": "tinyshakespeare", "tokenizer": "char", "val_fraction": 0.1},
    )
    save_weights(model, run_dir / MODEL_FILE)
    print(f"  teacher written to {run_dir}", flush=True)


if __name__ == "__main__":
    main()
