"""SMS spam classification on the reference split: classic baselines, gptlab's classifier from
random weights and from a pretrained base under three freezing policies, and transformers'
GPT2ForSequenceClassification from the same base weights, trained by the same loop on the same
batches. Also the training-step speed of the two classifiers, side by side.

    PYTHONPATH=src python3 benchmarks/classify.py --base runs/gpt2-mini --device cuda   # a GPU
    GPTLAB_DATA=../shared/data uv run python benchmarks/classify.py \\
        --random-base gpt2-mini --only speed,cpu-wall                                 # 2 CPU cores

OpenAI's GPT-2 weights cannot be downloaded here, so the base is `gpt2-mini`, pretrained by
gptlab on the public English text of its registry (`gptlab train --preset gpt2-mini`); with the
hub, pass `--base gpt2`. The split is the reference's (Raschka 2024, chapter 6): ham undersampled
to the 747 spam, shuffled with seed 123, 1045 / 149 / 300. Each gptlab and peer configuration
picks its learning rate from `--lrs` by validation accuracy (then loss); the test split is only
read for the table. Fine-tuning runs with dropout 0, as the reference does, so the two
implementations compute the same function and differ only by rounding.
"""

from __future__ import annotations

import time

PROCESS_START = time.perf_counter()

import argparse
import copy
import dataclasses
import json
import statistics

import torch
from torch import nn

from gptlab.config import GPTConfig
from gptlab.data.labelled import load_labelled, split_labelled
from gptlab.device import resolve_device
from gptlab.models.gpt import GPT
from gptlab.pretrained import classifier_config_to_hf, classifier_state_to_hf, load_model
from gptlab.tasks.classification import (
    DataSpec,
    classification_loss,
    classifier_from_body,
    evaluate_split,
    evaluator,
    prepare_data,
)
from gptlab.tokenizers import get_tokenizer
from gptlab.training.config import TrainConfig
from gptlab.training.freezing import freeze
from gptlab.training.trainer import Callback, Trainer

# Learning rates tried for each configuration; the one with the best validation accuracy wins.
LRS = {
    "head": (1e-3, 3e-3),
    "last-block": (1e-4, 3e-4, 1e-3),
    "all": (5e-5, 1e-4, 3e-4),
    "random-all": (3e-4, 1e-3),
}
PARTS = ("baselines", "accuracy", "extra", "peer", "speed", "cpu-wall")


class KeepBest(Callback):
    """Keeps a copy of the weights of the best evaluation (the trainer's monitored metric)."""

    def __init__(self):
        self.state, self.step = None, None

    def on_eval_end(self, trainer, metrics, improved):
        if improved:
            self.state = copy.deepcopy(trainer.raw_model.state_dict())
            self.step = metrics["step"]


class HFClassifier(nn.Module):
    """transformers' GPT2ForSequenceClassification behind gptlab's (idx, mask, targets) call."""

    def __init__(self, hf, head):
        super().__init__()
        self.hf = hf
        self.head = head  # the gptlab head config it mirrors: labels, pad id, padding side
        self.transformer, self.score = hf.transformer, hf.score  # for `freeze`

    def forward(self, idx, padding_mask=None, targets=None):
        mask = None if padding_mask is None else padding_mask.long()
        out = self.hf(input_ids=idx, attention_mask=mask, labels=targets)
        return out.logits, out.loss


def hf_twin(model):
    """A GPT2ForSequenceClassification with the same weights as a gptlab GPTClassifier."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    values = classifier_config_to_hf(model.config, model.head)
    hf = GPT2ForSequenceClassification(GPT2Config(**values))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    missing, unexpected = hf.load_state_dict(classifier_state_to_hf(state), strict=False)
    assert not unexpected and all(name.endswith("lm_head.weight") for name in missing), missing
    return HFClassifier(hf, model.head)


def baselines(splits) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    pipelines = {
        "TF-IDF words + logistic regression": make_pipeline(
            TfidfVectorizer(), LogisticRegression(max_iter=1000)
        ),
        "TF-IDF char 2-5-grams + linear SVM": make_pipeline(
            TfidfVectorizer(analyzer="char", ngram_range=(2, 5)), LinearSVC()
        ),
    }
    results = {}
    for name, pipeline in pipelines.items():
        start = time.perf_counter()
        pipeline.fit(splits["train"].texts, splits["train"].labels)
        predicted = pipeline.predict(splits["test"].texts)
        results[name] = {
            "accuracy": accuracy_score(splits["test"].labels, predicted),
            "macro_f1": f1_score(splits["test"].labels, predicted, average="macro"),
            "seconds": time.perf_counter() - start,
        }
    return results


def fine_tune(make_model, policy: str, lr: float, epochs: float, data, config, device) -> dict:
    """Train one configuration; the test report of its best validation checkpoint."""
    torch.manual_seed(config.seed)
    model = make_model()
    trainable, total = freeze(model, policy)
    config = dataclasses.replace(config, lr=lr, min_lr=lr / 10)
    pad_id, side = model.head.pad_id, model.head.padding_side
    batches = data.batches("train", config.batch_size, pad_id, side, seed=config.seed)
    config = dataclasses.replace(config, max_iters=batches.steps_for(epochs))
    val = data.batches("val", 64, pad_id, side)
    keep = KeepBest()
    trainer = Trainer(
        model,
        config,
        train_batch=lambda step, index: batches.train_batch(step, index, device),
        device=device,
        loss_fn=classification_loss,
        evaluator=evaluator(val, data.names, device),
        monitor="loss",
        callbacks=[keep],
    )
    _sync(device)
    start = time.perf_counter()
    trainer.fit()
    _sync(device)
    seconds = time.perf_counter() - start
    trainer.raw_model.load_state_dict(keep.state)
    val_report = evaluate_split(trainer.raw_model, val, data.names, device, trainer.autocast)
    test = data.batches("test", 64, pad_id, side)
    report = evaluate_split(trainer.raw_model, test, data.names, device, trainer.autocast)
    return {
        "lr": lr,
        "policy": policy,
        "trainable": trainable,
        "total": total,
        "seconds": seconds,
        "steps": config.max_iters,
        "best_step": keep.step,
        "val_accuracy": val_report["accuracy"],
        "val_loss": val_report["loss"],
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "report": report,
    }


def best_of(make_model, policy, lrs, epochs, data, config, device, name) -> dict:
    tried = []
    for lr in lrs:
        result = fine_tune(make_model, policy, lr, epochs, data, config, device)
        print(
            f"  {name} lr {lr:g}: val acc {result['val_accuracy']:.2%} loss {result['val_loss']:.4f}, "
            f"test acc {result['accuracy']:.2%}, best step {result['best_step']}/{result['steps']}, "
            f"{result['seconds']:.1f} s",
            flush=True,
        )
        tried.append(result)
    return max(tried, key=lambda r: (r["val_accuracy"], -r["val_loss"]))


def step_times(models: dict, policy, data, config, device, steps: int) -> dict[str, list[float]]:
    """Seconds of each training step (after 5 warm-up steps) of each model, on the same training
    batches, the models taking turns step by step so that a busy machine slows them alike."""
    trainers = {}
    for name, model in models.items():
        torch.manual_seed(config.seed)
        freeze(model, policy)
        head = model.head
        batches = data.batches(
            "train", config.batch_size, head.pad_id, head.padding_side, seed=config.seed
        )
        trainers[name] = Trainer(
            model,
            dataclasses.replace(config, max_iters=steps + 5),
            train_batch=lambda step, index, b=batches: b.train_batch(step, index, device),
            device=device,
            loss_fn=classification_loss,
        )
    times = {name: [] for name in models}
    for step in range(steps + 5):
        for name, trainer in trainers.items():
            trainer.step = step
            _sync(device)
            start = time.perf_counter()
            trainer.train_step(config.lr)
            _sync(device)
            if step >= 5:
                times[name].append(time.perf_counter() - start)
    return times


def adapt(state, body_config, texts, tokenizer, device, seed, steps=300) -> dict:
    """The base after language-model training on the training split's texts (in-domain
    adaptation, Gururangan et al. 2020): a body that has read SMS before it classifies them."""
    import tempfile
    from pathlib import Path

    from gptlab.data.text import TokenData

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sms-train.txt"
        path.write_text("\n<|endoftext|>\n".join(texts), encoding="utf-8")
        data = TokenData.from_file(path, tokenizer, val_fraction=0.0)
    torch.manual_seed(seed)
    body = GPT(dataclasses.replace(body_config, dropout=0.1))
    body.load_state_dict(state)
    config = TrainConfig(
        max_iters=steps,
        batch_size=16,
        lr=3e-4,
        min_lr=3e-5,
        warmup_iters=20,
        eval_interval=0,
        log_interval=steps,
        device=str(device),
        seed=seed,
    )
    trainer = Trainer(
        body,
        config,
        train_batch=lambda step, index: data.train_batch(step, index, 16, 128, seed, device),
        device=device,
    )
    trainer.fit()
    print(
        f"  adapted the base on {len(data.tokens):,} tokens of SMS training text, {steps} steps",
        flush=True,
    )
    return {k: v.detach().clone() for k, v in body.state_dict().items()}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--base",
        default="runs/gpt2-mini",
        help="the pretrained base (gptlab run, HF folder, or gpt2)",
    )
    parser.add_argument(
        "--random-base",
        metavar="PRESET",
        help="a base of this preset's shape with random weights (speed only)",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=float, default=5.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--timing-steps", type=int, default=50)
    parser.add_argument(
        "--only", default=",".join(PARTS), help=f"comma-separated parts: {', '.join(PARTS)}"
    )
    parser.add_argument(
        "--quick", action="store_true", help="one learning rate each, a few steps: a smoke run"
    )
    parser.add_argument(
        "--report-json", help="write the test report of the best gptlab configuration here"
    )
    args = parser.parse_args()
    parts = set(args.only.split(","))
    epochs = 0.1 if args.quick else args.epochs

    device = resolve_device(args.device)
    if args.random_base:
        base = GPT(GPTConfig.from_preset(args.random_base, dropout=0.0))
        tokenizer, source = get_tokenizer("gpt2"), f"random {args.random_base}"
    else:
        base, tokenizer, _ = load_model(args.base)
        source = args.base
    body_config = dataclasses.replace(base.config, dropout=0.0)
    base_state = {k: v.detach().clone() for k, v in base.state_dict().items()}
    split = split_labelled(load_labelled("sms-spam"), balance=True)
    data = prepare_data(DataSpec(), tokenizer, body_config.context_length)
    config = TrainConfig(
        batch_size=args.batch_size,
        warmup_iters=20,
        weight_decay=0.1,
        beta2=0.999,
        eval_interval=50,
        log_interval=50,
        device=str(device),
        seed=args.seed,
        max_iters=1,
    )
    n_params = GPT(body_config).num_params()
    print(
        f"base {source} ({n_params / 1e6:.1f}M parameters, {body_config.n_layer} layers x {body_config.n_embd}); "
        f"sms-spam {len(split['train'])}/{len(split['val'])}/{len(split['test'])}; device {device}, "
        f"torch {torch.__version__}, batch {args.batch_size}, {epochs:g} epochs",
        flush=True,
    )

    def from_base(pooling="last", dropout=0.0, state=None):
        body = GPT(dataclasses.replace(body_config, dropout=dropout))
        body.load_state_dict(base_state if state is None else state)
        return classifier_from_body(body, data.names, pad_id=50256, pooling=pooling)

    def from_random(pooling="last"):
        return classifier_from_body(GPT(body_config), data.names, pad_id=50256, pooling=pooling)

    rows = []  # (name, accuracy, macro_f1, note)
    if "baselines" in parts:
        for name, r in baselines(split).items():
            rows.append((name, r["accuracy"], r["macro_f1"], f"{r['seconds']:.1f} s"))
            print(f"  {name}: test acc {r['accuracy']:.2%}", flush=True)

    chosen = {}
    if "accuracy" in parts:
        lrs = (lambda key: LRS[key][:1]) if args.quick else (lambda key: LRS[key])
        chosen["random all"] = best_of(
            from_random, "all", lrs("random-all"), epochs, data, config, device, "gptlab random all"
        )
        for policy in ("head", "last-block", "all"):
            chosen[f"base {policy}"] = best_of(
                from_base,
                policy,
                lrs(policy),
                epochs,
                data,
                config,
                device,
                f"gptlab base {policy}",
            )
        for name, r in chosen.items():
            rows.append(
                (
                    f"gptlab {name}",
                    r["accuracy"],
                    r["macro_f1"],
                    f"lr {r['lr']:g}, {r['trainable'] / 1e6:.2f}M of {r['total'] / 1e6:.1f}M trained, {r['seconds']:.1f} s",
                )
            )
        best_name, best = max(
            chosen.items(), key=lambda item: (item[1]["val_accuracy"], -item[1]["val_loss"])
        )
        print(f"best gptlab configuration by validation accuracy: {best_name}", flush=True)
        if args.report_json:
            with open(args.report_json, "w") as file:
                label = f"sms-spam (test split), gptlab {best_name} ({source} as base)"
                json.dump({**best["report"], "data": label}, file)

    if "extra" in parts:
        adapted = adapt(base_state, body_config, split["train"].texts, tokenizer, device, args.seed)
        extra = {
            "base all, higher lr": (from_base, (1e-3,)),
            "base all, mean pooling": (lambda: from_base("mean"), (1e-4, 3e-4, 1e-3)),
            "base all, dropout 0.1": (lambda: from_base(dropout=0.1), (1e-4, 3e-4, 1e-3)),
            "random all, mean pooling": (lambda: from_random("mean"), (3e-4, 1e-3)),
            "SMS-adapted base all": (lambda: from_base(state=adapted), (1e-4, 3e-4, 1e-3)),
            "SMS-adapted base all, mean": (lambda: from_base("mean", state=adapted), (3e-4, 1e-3)),
        }
        for name, (make, lrs) in extra.items():
            r = best_of(make, "all", lrs, epochs, data, config, device, f"gptlab {name}")
            chosen[name] = r
            rows.append(
                (
                    f"gptlab {name}",
                    r["accuracy"],
                    r["macro_f1"],
                    f"lr {r['lr']:g}, val {r['val_accuracy']:.2%}, {r['seconds']:.1f} s",
                )
            )

    if "peer" in parts and chosen:
        for policy in ("last-block", "all"):
            mine = chosen[f"base {policy}"]
            peer = fine_tune(
                lambda: hf_twin(from_base()), policy, mine["lr"], epochs, data, config, device
            )
            rows.append(
                (
                    f"transformers base {policy}",
                    peer["accuracy"],
                    peer["macro_f1"],
                    f"same lr {mine['lr']:g} and batches; gptlab - transformers = "
                    f"{(mine['accuracy'] - peer['accuracy']) * 100:+.2f} points",
                )
            )

    if rows:
        print("\n| configuration | test accuracy | test macro-F1 | notes |\n|---|---:|---:|---|")
        for name, accuracy, f1, note in rows:
            print(f"| {name} | {accuracy:.2%} | {f1:.4f} | {note} |")

    if "speed" in parts:
        print(
            f"\ntraining step, batch {args.batch_size}, median of {args.timing_steps} after 5 warm-up ({device}, "
            f"{'bf16 autocast' if device.type == 'cuda' else 'float32'}):"
        )
        print("| policy | gptlab ms | transformers ms | ratio |\n|---|---:|---:|---:|")
        for policy in ("last-block", "all"):
            models = {"gptlab": from_base(), "transformers": hf_twin(from_base())}
            times = step_times(models, policy, data, config, device, args.timing_steps)
            mine, peer = (statistics.median(times[name]) for name in models)
            print(
                f"| {policy} | {mine * 1e3:.2f} | {peer * 1e3:.2f} | {peer / mine:.2f} |",
                flush=True,
            )

    if "cpu-wall" in parts:
        result = fine_tune(from_base, "last-block", 1e-4, epochs, data, config, device)
        print(
            f"\nlast-block fine-tuning, {result['steps']} steps ({epochs:g} epochs, evaluation every 50 steps "
            f"included) on {device} with {torch.get_num_threads()} threads: {result['seconds']:.1f} s"
        )
    print(f"\nprocess wall time: {time.perf_counter() - PROCESS_START:.1f} s")


if __name__ == "__main__":
    main()
