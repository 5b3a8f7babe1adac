"""`gptlab seq2seq train`: train an encoder-decoder on a toy task and write a run directory."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from gptlab.data.toy_seq2seq import TOY_TASKS
from gptlab.errors import ConfigError

EXAMPLES = """\
examples:
  gptlab seq2seq train --task reverse --out runs/reverse      # learns it on 2 CPU cores in minutes
  gptlab seq2seq train --task add --out runs/add              # 3-digit addition
  gptlab seq2seq train --task sort --max-len 10 --max-iters 500 --out runs/sort10
  gptlab seq2seq train --task copy --n-embd 64 --no-pre-norm --schedule noam --out runs/copy
  gptlab seq2seq train --resume runs/reverse --max-iters 3000
then:
  gptlab translate runs/reverse "31415926" --beam 5
  gptlab eval runs/reverse --split test
"""

# What each task needs, measured on 2 shared CPU cores (the table in docs/seq2seq.md): each
# reaches >= 99% exact match on its held-out test pairs in under 5 minutes there. A small model
# (64 wide, 2 + 2 layers, 0.23M parameters) at a high learning rate learns fastest per second;
# dropout only slows it down, since fresh pairs at every step leave nothing to overfit.
SHARED_DEFAULTS = dict(
    n_encoder_layer=2,
    n_decoder_layer=2,
    n_head=4,
    n_embd=64,
    dropout=0.0,
    batch_size=64,
    lr=2e-3,
    min_lr=1e-4,
    warmup_iters=100,
    weight_decay=0.01,
    beta2=0.98,  # Vaswani et al. 2017, 5.3
    eval_interval=500,
    label_smoothing=0.0,
)
TASK_DEFAULTS: dict[str, dict] = {
    "copy": dict(max_iters=800),
    "reverse": dict(max_iters=1000),
    "sort": dict(max_iters=1000),
    "add": dict(max_iters=1500),
}
# The toy tasks' own settings, saved in config.json's "data".
DATA_DEFAULTS = dict(max_len=20, digits=3, val_size=200, test_size=1000)
# Seq2SeqConfig fields that the tokenizer fixes, not a flag.
VOCABULARY_FIELDS = ("src_vocab_size", "tgt_vocab_size", "pad_id", "bos_id", "eos_id")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "seq2seq",
        help="train an encoder-decoder Transformer (toy tasks)",
        description="Encoder-decoder Transformers (Vaswani et al. 2017): train one on a toy "
        "task generated on the fly, then use it with `gptlab translate` and `gptlab eval`.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", dest="action")
    actions.required = True
    train = actions.add_parser(
        "train",
        help="train on copy, reverse, sort or 3-digit addition and write a run directory",
        description="Train an encoder-decoder on a toy task (digits copied, reversed or sorted, "
        "or two numbers added), with sequences generated from the seed; one source in ten is "
        "held out for validation and test. Writes config.json, the tokenizer, "
        "model.safetensors, trainer_state.pt and metrics.jsonl, and prints the test exact match.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_train_flags(train)
    train.set_defaults(run=run, command="seq2seq train")


def add_train_flags(parser) -> None:
    from gptlab.commands.train import add_field_flag
    from gptlab.models.seq2seq_config import Seq2SeqConfig
    from gptlab.training.config import TrainConfig

    S = argparse.SUPPRESS
    parser.add_argument("--task", choices=TOY_TASKS, default=S, help="the toy task to learn")
    parser.add_argument("--out", default=S, help="run directory (default runs/seq2seq-TASK)")
    parser.add_argument("--resume", default=S, metavar="RUN_DIR", help="continue a run")
    data = parser.add_argument_group("toy data")
    data.add_argument("--max-len", type=int, default=S, help="digits per sequence (default 20)")
    data.add_argument("--digits", type=int, default=S, help="digits per number, add (default 3)")
    data.add_argument("--val-size", type=int, default=S, help="validation pairs (default 200)")
    data.add_argument("--test-size", type=int, default=S, help="test pairs (default 1000)")
    parser.add_argument(
        "--label-smoothing",
        type=float,
        default=S,
        help="share of each target's probability spread over the vocabulary (default 0; "
        "Vaswani et al. use 0.1 for translation)",
    )
    parser.add_argument(
        "--no-tensorboard", action="store_true", help="do not write TensorBoard events"
    )
    model = parser.add_argument_group("model")
    for field in dataclasses.fields(Seq2SeqConfig):
        if field.name not in VOCABULARY_FIELDS:
            add_field_flag(model, field, Seq2SeqConfig, SHARED_DEFAULTS)
    train = parser.add_argument_group("training (defaults depend on --task)")
    for field in dataclasses.fields(TrainConfig):
        add_field_flag(train, field, TrainConfig, SHARED_DEFAULTS)


def run(args: argparse.Namespace) -> int:
    from gptlab.models.seq2seq_config import Seq2SeqConfig
    from gptlab.training.config import TrainConfig

    settings = {
        k: v
        for k, v in vars(args).items()
        if k not in ("run", "command", "action", "no_tensorboard")
    }
    if "resume" in settings:
        run_dir = Path(settings.pop("resume"))
        saved = _resumed_config(run_dir, settings)
        model_cfg = Seq2SeqConfig.from_dict(saved["model"])
        train_cfg = TrainConfig(**{**saved["train"], **settings})
        data, extra = saved["data"], saved["seq2seq"]
        return _train(run_dir, model_cfg, train_cfg, data, extra, resume=True, args=args)
    if "task" not in settings:
        raise ConfigError("choose a --task: " + ", ".join(TOY_TASKS))
    task = settings.pop("task")
    layered = {**SHARED_DEFAULTS, **TASK_DEFAULTS[task], **settings}
    run_dir = Path(layered.pop("out", f"runs/seq2seq-{task}"))
    model_over, train_over, data, extra = _split(layered)
    data = {"task": task, **DATA_DEFAULTS, **data}
    train_cfg = TrainConfig(**train_over)
    data["seed"] = train_cfg.seed
    model_cfg = _model_config(data, model_over)
    return _train(run_dir, model_cfg, train_cfg, data, extra, resume=False, args=args)


def _split(settings: dict) -> tuple[dict, dict, dict, dict]:
    """(model, train, data, seq2seq) sections of flat settings."""
    from gptlab.models.seq2seq_config import Seq2SeqConfig
    from gptlab.training.config import TrainConfig

    model_keys = {f.name for f in dataclasses.fields(Seq2SeqConfig)} - set(VOCABULARY_FIELDS)
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    model, train, data, extra = {}, {}, {}, {}
    for key, value in settings.items():
        if key in model_keys:
            model[key] = value
        elif key in train_keys:
            train[key] = value
        elif key in DATA_DEFAULTS:
            data[key] = value
        elif key == "label_smoothing":
            extra[key] = value
        else:
            raise ConfigError(f"unknown setting {key!r}")
    if not 0.0 <= extra.get("label_smoothing", 0.0) < 1.0:
        raise ConfigError("--label-smoothing must be in [0, 1)")
    for key in ("val_size", "test_size"):
        if data.get(key, 1) < 1:
            raise ConfigError(f"--{key.replace('_', '-')} must be at least 1")
    return model, train, data, extra


def _model_config(data: dict, model_over: dict):
    """The encoder-decoder for a toy task: one joint vocabulary, shared embeddings, positions
    for the longest source and target (plus EOS, and BOS)."""
    from gptlab.data.toy_seq2seq import ToyTask
    from gptlab.models.seq2seq_config import Seq2SeqConfig
    from gptlab.tokenizers.symbols import SymbolTokenizer

    task = ToyTask(data["task"], data["max_len"], data["digits"])
    tokenizer = SymbolTokenizer(toy_alphabet())
    longest = max(task.max_source_length, task.max_target_length) + 2
    values = dict(
        src_vocab_size=tokenizer.vocab_size,
        tgt_vocab_size=tokenizer.vocab_size,
        pad_id=tokenizer.pad_id,
        bos_id=tokenizer.bos_id,
        eos_id=tokenizer.eos_id,
        shared_embeddings=True,
        max_length=longest,
    )
    return Seq2SeqConfig(**{**values, **model_over})


def toy_alphabet() -> str:
    from gptlab.data.toy_seq2seq import ALPHABET

    return ALPHABET


def _resumed_config(run_dir: Path, settings: dict) -> dict:
    from gptlab.runs import read_run_config
    from gptlab.tasks.seq2seq import is_seq2seq_config
    from gptlab.training.config import TrainConfig

    saved = read_run_config(run_dir)
    if not is_seq2seq_config(saved):
        raise ConfigError(f"{run_dir} is not a seq2seq run: resume it with its own command")
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    if set(settings) - train_keys:
        raise ConfigError(
            "--resume continues a run as it was: only training settings (e.g. --max-iters) may change"
        )
    return saved


def _train(run_dir: Path, model_cfg, train_cfg, data: dict, extra: dict, resume: bool, args):
    import time

    import torch

    from gptlab.commands.train import fit, training_device
    from gptlab.data.toy_seq2seq import ToyTask
    from gptlab.models.seq2seq import Seq2Seq
    from gptlab.runs import write_run_config
    from gptlab.tasks.seq2seq import (
        ToyBatches,
        evaluate_pairs,
        evaluator,
        loss_function,
        target_tokens,
    )
    from gptlab.tokenizers.symbols import SymbolTokenizer
    from gptlab.training.callbacks import standard_callbacks
    from gptlab.training.checkpoint import STATE_FILE, TOKENIZER_DIR, load_trainer_state
    from gptlab.training.trainer import Trainer

    if not resume and (run_dir / STATE_FILE).exists():
        raise ConfigError(
            f"{run_dir} already holds a run: resume it with --resume {run_dir}, or choose another --out"
        )
    device, group = training_device(train_cfg)
    task = ToyTask(data["task"], data["max_len"], data["digits"])
    tokenizer = SymbolTokenizer(toy_alphabet())
    val_pairs = task.pairs("val", data["val_size"], data["seed"])
    torch.manual_seed(train_cfg.seed)
    model = Seq2Seq(model_cfg)
    if group.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        tokenizer.save(run_dir / TOKENIZER_DIR)
        write_run_config(
            run_dir, model_cfg, train_cfg.to_dict(), data, task="seq2seq", seq2seq=extra
        )
    batches = ToyBatches(task, tokenizer, train_cfg.batch_size, data["seed"], device)
    trainer = Trainer(
        model,
        train_cfg,
        batches.train_batch,
        device=device,
        loss_fn=loss_function(extra.get("label_smoothing", 0.0)),
        callbacks=standard_callbacks(
            run_dir,
            is_main=group.is_main,
            tensorboard=not args.no_tensorboard,
            patience=train_cfg.patience,
        ),
        group=group,
        count_items=target_tokens,
        evaluator=evaluator(val_pairs, tokenizer, tokenizer, device)
        if train_cfg.eval_interval
        else None,
    )
    if resume:
        trainer.load_state_dict(load_trainer_state(run_dir / STATE_FILE))
    if group.is_main:
        print(
            f"training {model.num_params() / 1e6:.2f}M parameters on {device} ({trainer.dtype}): "
            f"{data['task']}, {train_cfg.max_iters} steps of {train_cfg.batch_size} -> {run_dir}",
            file=sys.stderr,
        )
    seconds = fit(trainer, group)
    if not group.is_main:
        return 0
    from gptlab.tasks.seq2seq import load_seq2seq_run

    started = time.perf_counter()
    best, *_ = load_seq2seq_run(run_dir, device)
    test = evaluate_pairs(
        best,
        tokenizer,
        tokenizer,
        task.pairs("test", data["test_size"], data["seed"]),
        device=device,
        batch_size=256,
    )
    print(
        f"done: {trainer.step} steps in {seconds:.1f} s; test exact match {test['exact_match']:.2%} "
        f"of {test['examples']} held-out pairs, loss {test['loss']:.4f} "
        f"({time.perf_counter() - started:.1f} s); run directory {run_dir}",
        file=sys.stderr,
    )
    return 0
