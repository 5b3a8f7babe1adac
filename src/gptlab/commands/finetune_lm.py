"""`gptlab finetune lm`: domain fine-tuning, a pretrained GPT's language-model training
continued on a new corpus with the model's own tokenizer."""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

from gptlab.errors import ConfigError

LM_EXAMPLES = """\
examples:
  gptlab finetune lm runs/gpt2-mini --data poetry/whitman --out runs/whitman
  gptlab finetune lm gpt2 --data my_corpus.txt --out runs/my-gpt2 --context-length 256
  gptlab finetune lm runs/gpt2-mini --data poetry/blake --lr 5e-5 --patience 2 --dropout 0.1
  gptlab finetune lm --resume runs/whitman --max-iters 2000
then:
  gptlab eval runs/whitman                          # perplexity on Whitman's validation split
  gptlab eval runs/whitman --data english-mix       # and on the base's corpus: what it forgot
  gptlab sample runs/whitman --prompt "I sing"
"""

# A tenth of the local base's pretraining learning rate (gpt2-mini: 1e-3), and a short warmup:
# the weights are already good, and large steps on a small corpus overwrite what the base knew
# (Gururangan et al. 2020 continue RoBERTa's pretraining on a new domain at 1e-4). Frequent
# evaluation with early stopping, because a corpus of a few hundred thousand tokens is learned
# by heart within a few passes.
LM_DEFAULTS = dict(
    max_iters=1000,
    batch_size=8,
    lr=1e-4,
    min_lr=1e-5,
    warmup_iters=20,
    weight_decay=0.1,
    beta2=0.99,
    eval_interval=50,
    eval_iters=20,
    patience=4,
    log_interval=10,
)
VAL_FRACTION = 0.1


def add_parser(tasks) -> None:
    """`finetune lm`, a task of `gptlab finetune` (gptlab.commands.finetune)."""
    from gptlab.commands.finetune_runs import ADAPTER_EXAMPLES, add_shared_flags

    S = argparse.SUPPRESS  # flags not given stay out of the namespace: the defaults layer
    parser = tasks.add_parser(
        "lm",
        help="domain fine-tuning: continue a language model's training on a new corpus",
        description="Continue the language-model training of a pretrained GPT on a new text "
        "corpus, with the model's own tokenizer and a lower learning rate than pretraining; "
        "the best checkpoint by validation loss on the new corpus is kept. The run directory is "
        "a language-model run like those of gptlab train: gptlab eval, sample and export read it.",
        epilog=LM_EXAMPLES + ADAPTER_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model",
        metavar="MODEL",
        nargs="?",
        help="the pretrained language model: a run directory, a Hugging Face GPT-2 folder or a "
        "name (gpt2, ...)",
    )
    parser.add_argument(
        "--data", default=S, help="the new corpus: a text file, a dataset or a corpus name"
    )
    parser.add_argument(
        "--out", default=S, help="run directory to create (default runs/finetune-<data>)"
    )
    parser.add_argument(
        "--resume", default=S, metavar="RUN_DIR", help="continue the run in RUN_DIR"
    )
    parser.add_argument(
        "--val-fraction",
        default=S,
        type=float,
        help=f"share of the corpus kept for validation (default {VAL_FRACTION})",
    )
    parser.add_argument(
        "--context-length",
        default=S,
        type=int,
        help="crop the model's context to this many tokens, for speed (default: the model's)",
    )
    parser.add_argument(
        "--dropout",
        default=S,
        type=float,
        help="dropout while fine-tuning (default: the base model's)",
    )
    add_shared_flags(parser, LM_DEFAULTS)
    parser.set_defaults(run=run, command="finetune lm")


def run(args: argparse.Namespace) -> int:
    from gptlab.commands.finetune_runs import given_settings

    settings = given_settings(args)
    if "resume" not in settings and "data" not in settings:
        raise ConfigError("name the corpus to fine-tune on: --data FILE_OR_DATASET")
    return _finetune(settings, tensorboard=not args.no_tensorboard)


def _finetune(settings: dict, tensorboard: bool) -> int:
    import torch

    from gptlab.adapters import freeze_base
    from gptlab.adapters.adapted import base_config
    from gptlab.commands.finetune_runs import (
        adapter_defaults,
        adapter_settings,
        new_run_dir,
        resumed_run,
    )
    from gptlab.commands.train import fit, lm_trainer, token_data, training_device
    from gptlab.data.text import resolve_text
    from gptlab.runs import write_run_config
    from gptlab.training.callbacks import standard_callbacks
    from gptlab.training.checkpoint import STATE_FILE, TOKENIZER_DIR, load_trainer_state
    from gptlab.training.config import TrainConfig

    train_keys = {field.name for field in dataclasses.fields(TrainConfig)}
    train_over = {key: value for key, value in settings.items() if key in train_keys}
    rest = {key: value for key, value in settings.items() if key not in train_keys}
    adapter = adapter_settings(rest)
    if "resume" in rest:
        run_dir = Path(rest.pop("resume"))
        saved, model, tokenizer, adapter = resumed_run(run_dir, "lm", rest, adapter)
        train_cfg = TrainConfig(**{**saved["train"], **train_over})
        data_cfg, base, finetune = saved["data"], saved["base"], saved["finetune"]
        text_path = resolve_text(data_cfg["data"])
    else:
        data_cfg = {
            "data": rest["data"],
            "tokenizer": "base",  # the base model's own, saved in the run directory
            "val_fraction": rest.get("val_fraction", VAL_FRACTION),
        }
        run_dir = new_run_dir(rest, f"runs/finetune-{Path(rest['data']).stem}")
        train_cfg = TrainConfig(**{**adapter_defaults(LM_DEFAULTS, adapter), **train_over})
        text_path = resolve_text(data_cfg["data"])  # a missing corpus fails before the model loads
        model, tokenizer, base = _base_model(rest["model"], rest, adapter)
        finetune = {
            "base_context_length": base.pop("context_length"),
            "context_length": model.config.context_length,
            "dropout": model.config.dropout,
        }

    if adapter is not None:  # before the trainer: its optimizer takes what trains
        trainable, total = freeze_base(model)
    device, group = training_device(train_cfg)
    data = token_data(text_path, tokenizer, data_cfg["val_fraction"], model.config, train_cfg)
    if group.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        tokenizer.save(run_dir / TOKENIZER_DIR)
        write_run_config(
            run_dir,
            base_config(model),
            train_cfg.to_dict(),
            data_cfg,
            task="lm",
            base=base,
            finetune=finetune,
            **({"adapter": adapter.to_dict()} if adapter else {}),
        )
    torch.manual_seed(train_cfg.seed)  # dropout's draws
    callbacks = standard_callbacks(
        run_dir, is_main=group.is_main, tensorboard=tensorboard, patience=train_cfg.patience
    )
    trainer = lm_trainer(model, train_cfg, data, device, callbacks, group)
    if "resume" in settings:
        trainer.load_state_dict(load_trainer_state(run_dir / STATE_FILE))
    if group.is_main:
        context = model.config.context_length
        cropped = (
            f" (cropped from {finetune['base_context_length']})"
            if context != finetune["base_context_length"]
            else ""
        )
        what = (
            f"{trainable:,} of {total:,} parameters ({adapter.describe()})"
            if adapter is not None
            else f"{model.num_params() / 1e6:.2f}M parameters"
        )
        print(
            f"fine-tuning {what} of {base['source']} "
            f"({base['kind']}) on {data_cfg['data']} with its own tokenizer, on {device} "
            f"({trainer.dtype}): {len(data.train):,} train / {len(data.val):,} val tokens, "
            f"context {context}{cropped}, lr {train_cfg.lr:g}, {train_cfg.max_iters} steps "
            f"-> {run_dir}",
            file=sys.stderr,
        )
    seconds = fit(trainer, group)
    if group.is_main:
        best = (
            f"best val loss {trainer.best_metric:.4f} (perplexity {math.exp(trainer.best_metric):.2f}), "
            if trainer.evaluated
            else ""
        )
        print(
            f"done: {trainer.step} steps, {best}{seconds:.1f} s; run directory {run_dir}",
            file=sys.stderr,
        )
    return 0


def _base_model(spec: str, rest: dict, adapter=None):
    """(model, tokenizer, base): the language model MODEL names, with the --dropout and
    --context-length asked for and the adapter attached, and what `base` records of it (plus
    its own context length; for an adapter, the checksum of its weights)."""
    from gptlab.adapters import attach
    from gptlab.adapters.adapted import base_record
    from gptlab.commands.finetune_runs import check_base
    from gptlab.pretrained import load_model
    from gptlab.runs import shaped_like

    model, tokenizer, info = load_model(spec)
    check_base(info, adapter, rest)
    if info["task"] != "lm":
        raise ConfigError(
            f"{spec} is a {info['task']} model, not a language model: domain fine-tuning "
            "continues a language model's training (a run of gptlab train, gpt2, ...)"
        )
    base_context = model.config.context_length
    base = base_record(info, model, adapter)
    wanted = dataclasses.replace(
        model.config,
        dropout=rest.get("dropout", model.config.dropout),
        context_length=rest.get("context_length", base_context),
    )
    model = shaped_like(model, wanted)
    if adapter is not None:
        model = attach(model, adapter, tokenizer)
    return model.train(), tokenizer, {**base, "context_length": base_context}
