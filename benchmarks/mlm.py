"""A masked-language-model encoder against a GPT of the same size, and gptlab's encoder against
transformers' BertForMaskedLM of the same shape.

1. Pretraining: a GPT (`gptlab train`) and an encoder (`gptlab train --objective mlm`) of one
   shape (the `gpt2-mini` preset: 6 x 384, context 256, GPT-2's BPE; the encoder's tokenizer
   adds [MASK]) on the same corpus (english-mix) for the same steps and batches. The encoder's
   masked-token accuracy on the held-out split is printed at each evaluation, and measured on
   the whole validation split at the end (`gptlab eval`).
2. Fine-tuning: each is fine-tuned on SMS spam (`gptlab finetune classify`, every weight
   trained, the same epochs and learning rate; GPT: last-token pooling; encoder: first-token
   pooling through BERT's pooler, the defaults): a table of test accuracy side by side, with
   the parameters and the pretraining and fine-tuning steps of each.
3. Speed: training steps of gptlab's MaskedLM and transformers' BertForMaskedLM of the same
   shape, on the same masked batches in the same Trainer (bf16 autocast on a GPU): tokens per
   second and their ratio (the issue's target: >= 1.2x on the GPU).

    PYTHONPATH=src python3 benchmarks/mlm.py                        # GPU, an estimated 2-4 minutes
    PYTHONPATH=src python3 benchmarks/mlm.py --compile              # both models compiled
    GPTLAB_DATA=../shared/data uv run python benchmarks/mlm.py --quick   # CPU, a few minutes

--quick is the CPU check that the comparison works and that both classifiers learn: a 2 x 64
shape, context 64, on a character tokenizer pretrained on the SMS messages' own text (no
labels: GPT-2's BPE and english-mix make each CPU step slow, and a character tokenizer built
from english-mix lacks some of the messages' characters), a few hundred steps each.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from gptlab.cli import main as gptlab
from gptlab.config import EncoderConfig, GPTConfig
from gptlab.device import resolve_device
from gptlab.models.encoder import MaskedLM
from gptlab.pretrained_bert import config_to_bert
from gptlab.training.config import TrainConfig
from gptlab.training.trainer import Callback, Trainer

JOBS = {
    "gpu": dict(
        corpus="english-mix",
        shape=["--preset", "gpt2-mini"],
        pretrain=["--max-iters", "2000", "--batch-size", "32", "--eval-interval", "500",
                  "--eval-iters", "50"],
        finetune=["--epochs", "3", "--lr", "1e-4", "--min-lr", "1e-5"],
        speed=dict(preset="gpt2-mini", shape={}, batch_size=32, steps=60, warmup=10),
    ),
    "quick": dict(
        corpus="sms-text",
        shape=["--preset", "tiny", "--tokenizer", "char", "--n-layer", "2", "--n-head", "4",
               "--n-embd", "64", "--context-length", "64"],
        pretrain=["--max-iters", "200", "--batch-size", "16", "--eval-interval", "100",
                  "--eval-iters", "5", "--patience", "100"],
        finetune=["--max-iters", "200", "--eval-interval", "100", "--lr", "1e-4",
                  "--min-lr", "1e-5"],
        speed=dict(preset="tiny", shape=dict(n_layer=2, n_head=4, n_embd=64, context_length=64),
                   batch_size=8, steps=8, warmup=2),
    ),
}  # fmt: skip
NAMES = {"lm": "GPT", "mlm": "encoder (MLM)"}


def corpus(name: str, root: Path) -> str:
    """The pretraining text: a registered corpus, or "sms-text", the SMS messages without
    their labels (for --quick)."""
    if name != "sms-text":
        return name
    from gptlab.data.sources import resolve

    rows = resolve("sms-spam").read_text(encoding="utf-8").splitlines()
    path = root / "sms.txt"
    path.write_text("\n".join(row.split("\t", 1)[-1] for row in rows) + "\n", encoding="utf-8")
    return str(path)


def pretrain_and_finetune(job: dict, root: Path, device: str, compile: bool) -> dict:
    """For a GPT and an encoder pretrained alike, then fine-tuned alike on SMS spam: their
    parameters, steps and test accuracy (gptlab's CLI does all of it)."""
    common = ["--device", device, "--no-tensorboard"] + (["--compile"] if compile else [])
    text = corpus(job["corpus"], root)
    results = {}
    for objective in ("lm", "mlm"):
        name, run, tuned = NAMES[objective], root / objective, root / f"{objective}-spam"
        print(f"\n== pretraining the {name} on {job['corpus']} ==", flush=True)
        args = ["train", "--objective", objective, *job["shape"], *job["pretrain"], "--data", text]
        assert gptlab([*args, *common, "--out", str(run)]) == 0
        if objective == "mlm":  # the masked-token accuracy over the whole validation split
            assert gptlab(["eval", str(run), "--device", device, "--batch-size", "32"]) == 0
        print(f"== fine-tuning the {name} on sms-spam ==", flush=True)
        args = ["finetune", "classify", str(run), "--data", "sms-spam", "--train", "all"]
        assert gptlab([*args, *job["finetune"], *common, "--out", str(tuned)]) == 0
        results[name] = {
            **test_metrics(tuned, device),
            "pretraining steps": steps_taken(run),
            "fine-tuning steps": steps_taken(tuned),
        }
    return results


def steps_taken(run: Path) -> int:
    """The last step a run logged (early stopping can end it before --max-iters)."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return max(json.loads(line)["step"] for line in lines)


def test_metrics(run: Path, device: str) -> dict:
    """Parameters (body and head), test accuracy and macro-F1 of a fine-tuned classifier."""
    from gptlab.pretrained import load_model
    from gptlab.tasks.classification import DataSpec, evaluate_split, max_text_tokens, prepare_data

    model, tokenizer, info = load_model(run, resolve_device(device), task="classify")
    spec = DataSpec.from_dict(info["config"]["data"])
    data = prepare_data(spec, tokenizer, max_text_tokens(model, info), model.head.labels)
    head = model.head
    batches = data.batches("test", 16, head.pad_id, head.padding_side)
    report = evaluate_split(model, batches, data.names, resolve_device(device))
    return {
        "parameters": model.num_params(),
        "test examples": report["examples"],
        "accuracy": report["accuracy"],
        "macro-F1": report["macro_f1"],
    }


class StepClock(Callback):
    """Seconds from the end of the warm-up steps (compilation, allocator) to the last step."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.seconds = warmup, None, None

    def on_step_end(self, trainer, metrics):
        if trainer.step == self.warmup:
            _sync(trainer.device)
            self.start = time.perf_counter()

    def on_train_end(self, trainer):
        _sync(trainer.device)
        self.seconds = time.perf_counter() - self.start


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_speed(job: dict, device, compile: bool, vocab_size: int, shape: GPTConfig) -> dict:
    """Training tokens per second of gptlab's MaskedLM and transformers' BertForMaskedLM."""
    from transformers import BertConfig, BertForMaskedLM

    from gptlab.data.masking import mask_tokens

    settings = job["speed"]
    config = EncoderConfig.from_gpt(shape, vocab_size=vocab_size, mask_id=vocab_size - 1)
    B, T = settings["batch_size"], config.context_length

    def masked(seed: int):
        gen = torch.Generator().manual_seed(seed)
        ids = torch.randint(0, vocab_size - 1, (B, T), generator=gen)
        inputs, labels = mask_tokens(ids, config.mask_id, vocab_size, (), gen)
        return inputs.to(device), labels.to(device)

    # Made once, on the device: the timed steps are the models' work, not the masking's.
    batches = [masked(seed) for seed in range(4)]

    def batch(step: int, index: int):
        return batches[step % len(batches)]

    def bert_loss(model, batch):
        inputs, labels = batch
        return model(input_ids=inputs, labels=labels).loss

    train = TrainConfig(
        max_iters=settings["steps"],
        batch_size=B,
        eval_interval=0,
        log_interval=settings["steps"],
        warmup_iters=0,
        device=str(device),
        compile=compile,
    )
    speeds = {}
    bert_values = {
        key: value
        for key, value in config_to_bert(config).items()
        if key not in ("model_type", "architectures")
    }
    peers = [
        ("gptlab MaskedLM", lambda: MaskedLM(config), None),
        ("transformers BertForMaskedLM", lambda: BertForMaskedLM(BertConfig(**bert_values)), bert_loss),
    ]  # fmt: skip
    for name, build, loss_fn in peers:
        torch.manual_seed(0)
        clock = StepClock(settings["warmup"])
        options = {"loss_fn": loss_fn} if loss_fn else {}
        trainer = Trainer(build(), train, batch, device=device, callbacks=[clock], **options)
        trainer.fit()
        steps = settings["steps"] - settings["warmup"]
        speeds[name] = steps * B * T / clock.seconds
        print(f"  {name}: {speeds[name]:,.0f} tokens/s ({trainer.dtype})", flush=True)
    return speeds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny shapes and steps, for a CPU")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile every model")
    parser.add_argument("--skip-pretraining", action="store_true", help="the speed table only")
    args = parser.parse_args()
    job = JOBS["quick" if args.quick else "gpu"]
    device = resolve_device(args.device)

    accuracy = {}
    if not args.skip_pretraining:
        with tempfile.TemporaryDirectory() as root:
            accuracy = pretrain_and_finetune(job, Path(root), str(device), args.compile)

    print("\n== training speed, same shape, same batches, same loop ==", flush=True)
    settings = job["speed"]
    shape = GPTConfig.from_preset(settings["preset"], **settings["shape"])
    speeds = training_speed(job, device, args.compile, shape.vocab_size + 1, shape)

    print(f"\nshape {shape.n_layer} x {shape.n_embd}, context {shape.context_length}; {device}")
    if accuracy:
        print(
            f"\npretrained on {job['corpus']} ({' '.join(job['pretrain'])}), fine-tuned on "
            f"sms-spam with every weight trained ({' '.join(job['finetune'])})\n"
        )
        columns = ["parameters", "pretraining steps", "fine-tuning steps", "accuracy", "macro-F1"]
        print("| model | " + " | ".join(columns) + " |")
        print("|---|" + "---:|" * len(columns))
        for name, row in accuracy.items():
            print(
                f"| {name} | {row['parameters']:,} | {row['pretraining steps']:,} | "
                f"{row['fine-tuning steps']:,} | {row['accuracy']:.2%} | {row['macro-F1']:.4f} |"
            )
        examples = next(iter(accuracy.values()))["test examples"]
        print(f"\n(SMS spam test split: {examples:,} messages, balanced: chance is 50%)")
    names = list(speeds)
    print("\n| training step | tokens/s |")
    print("|---|---:|")
    for name, value in speeds.items():
        print(f"| {name} | {value:,.0f} |")
    print(
        f"\nratio gptlab / transformers: {speeds[names[0]] / speeds[names[1]]:.2f}x (target >= 1.2 on a GPU, bf16)"
    )


if __name__ == "__main__":
    main()
