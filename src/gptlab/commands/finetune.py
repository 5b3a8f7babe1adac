"""`gptlab finetune TASK`: the command that holds the tasks (`lm` and `instruct` have modules of
their own), and `gptlab finetune classify`: put a classification head on a pretrained GPT and
train it."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from gptlab.errors import ConfigError

CLASSIFY_EXAMPLES = """\
examples:
  gptlab finetune classify gpt2 --data sms-spam --out runs/spam           # the reference recipe
  gptlab finetune classify runs/gpt2-mini --data sms-spam --train all --lr 1e-4 --epochs 8
  gptlab finetune classify gpt2 --data reviews.csv --text-column review --label-column stars
  gptlab finetune classify gpt2 --data tickets.jsonl --train last-2 --monitor accuracy --patience 3
  gptlab finetune classify gpt2 --data sms-spam --lora targets=q,k,v,c_proj,c_fc,score
  gptlab finetune classify runs/gpt2-mini --data sms-spam --prompt-tuning 20 --out runs/spam-prompt
  gptlab finetune classify --resume runs/spam --max-iters 1000
  gptlab finetune classify runs/mlm --data sms-spam --train all --out runs/spam-encoder  # an encoder
then:
  gptlab eval runs/spam                          # accuracy, F1, confusion matrix on the test split
  gptlab classify runs/spam "You won a prize! Call now"
"""

FINETUNE_EXAMPLES = """\
examples:
  gptlab finetune classify gpt2 --data sms-spam --out runs/spam
  gptlab finetune lm runs/gpt2-mini --data poetry/whitman --out runs/whitman
  gptlab finetune instruct gpt2-medium --data instruction-data --out runs/instruct
Run `gptlab finetune TASK --help` for a task's options.
"""

# The reference recipe (Raschka 2024, chapter 6): batch 8, AdamW at 5e-5 with weight decay 0.1,
# five epochs. A short warmup and a cosine to a tenth keep the first steps of a new, random head
# from shaking the pretrained body.
CLASSIFY_DEFAULTS = dict(
    batch_size=8,
    lr=5e-5,
    min_lr=5e-6,
    warmup_iters=20,
    weight_decay=0.1,
    beta2=0.999,
    eval_interval=50,
    log_interval=10,
)
EPOCHS = 5.0
MONITORS = ("loss", "accuracy")  # what picks the best checkpoint (gptlab.training.trainer)
# Settings of the evaluation of a language model, which a classifier's (the whole validation
# split) does not use.
UNUSED_TRAIN_FIELDS = ("eval_iters",)


def add_parser(subparsers) -> None:
    from gptlab.commands import finetune_lm
    from gptlab.commands.finetune_runs import add_shared_flags
    from gptlab.config import PADDING_SIDES, POOLINGS

    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune a pretrained GPT: classify, lm (a new corpus), instruct",
        description="Fine-tune a pretrained GPT for a task. Each task writes a run directory that "
        "gptlab eval, export and the task's own command read.",
        epilog=FINETUNE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tasks = parser.add_subparsers(title="tasks", metavar="TASK", parser_class=type(parser))
    parser.set_defaults(run=lambda args: parser.print_help() or 2, command="finetune")

    S = argparse.SUPPRESS  # flags not given stay out of the namespace: the defaults layer
    classify = tasks.add_parser(
        "classify",
        help="a text classifier: a head on the last token's hidden state",
        description="Put a classification head on a pretrained GPT (it reads the hidden state of "
        "each text's last token) and train it, with as much of the body as --train says, on "
        "labelled text: the SMS Spam Collection (sms-spam, split as the published reference does) "
        "or any CSV, TSV or JSONL file with a text and a label column.",
        epilog=CLASSIFY_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    classify.add_argument(
        "model",
        metavar="MODEL",
        nargs="?",
        help="the pretrained model: a run directory, a Hugging Face GPT-2 folder or a name (gpt2, ...)",
    )
    classify.add_argument(
        "--data", default=S, help="sms-spam, or a .csv/.tsv/.jsonl file (default sms-spam)"
    )
    classify.add_argument(
        "--out", default=S, help="run directory to create (default runs/classify-<data>)"
    )
    classify.add_argument(
        "--resume", default=S, metavar="RUN_DIR", help="continue the run in RUN_DIR"
    )
    classify.add_argument(
        "--train",
        default=S,
        dest="policy",
        metavar="POLICY",
        help="what trains: head, last-block (the last block, final LayerNorm and head), "
        "last-N, or all (default last-block)",
    )
    classify.add_argument(
        "--epochs",
        default=S,
        type=float,
        help=f"passes over the training split (default {EPOCHS:g}); --max-iters overrides",
    )
    classify.add_argument(
        "--pooling",
        default=S,
        choices=POOLINGS,
        help="what the head reads: the last real token, the mean of all, or (for an encoder, "
        "a masked-language model) the first token (default: last for a GPT, first for an encoder)",
    )
    classify.add_argument(
        "--pooler",
        default=S,
        action=argparse.BooleanOptionalAction,
        help="an encoder with first-token pooling: pass that state through BERT's pooler (dense "
        "+ tanh) before the head, as BertForSequenceClassification does, so the run exports to "
        "it (default: on for first-token pooling)",
    )
    classify.add_argument(
        "--padding-side",
        default=S,
        choices=PADDING_SIDES,
        help="where batches are padded (default right)",
    )
    classify.add_argument(
        "--text-column", default=S, help="the text column of a file (default text)"
    )
    classify.add_argument(
        "--label-column", default=S, help="the label column of a file (default label)"
    )
    classify.add_argument(
        "--max-length",
        default=S,
        type=int,
        help="tokens kept of each text (default: the model's context)",
    )
    classify.add_argument(
        "--balance",
        default=S,
        action=argparse.BooleanOptionalAction,
        help="undersample every class to the smallest (default: on for sms-spam, as the reference)",
    )
    classify.add_argument(
        "--fractions",
        default=S,
        metavar="TRAIN,VAL,TEST",
        help="split fractions (default 0.7,0.1,0.2)",
    )
    classify.add_argument(
        "--split-seed", default=S, type=int, help="seed of the split (default 123, the reference's)"
    )
    classify.add_argument(
        "--monitor",
        default=S,
        choices=MONITORS,
        help="the validation metric that picks the best checkpoint and early-stops (default loss)",
    )
    classify.add_argument(
        "--dropout",
        default=S,
        type=float,
        help="dropout of the body while fine-tuning (default: the base model's)",
    )
    add_shared_flags(classify, CLASSIFY_DEFAULTS, UNUSED_TRAIN_FIELDS)
    classify.set_defaults(run=run_classify, command="finetune classify")
    finetune_lm.add_parser(tasks)

    from gptlab.commands.finetune_instruct import add_instruct_parser

    add_instruct_parser(tasks)


def run_classify(args: argparse.Namespace) -> int:
    from gptlab.commands.finetune_runs import given_settings

    return _classify(given_settings(args), tensorboard=not args.no_tensorboard)


def _split(settings: dict) -> tuple[dict, dict, dict]:
    """Flat settings to (TrainConfig values, DataSpec values, the rest)."""
    from gptlab.tasks.classification import DataSpec
    from gptlab.training.config import TrainConfig

    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    data_keys = {f.name for f in dataclasses.fields(DataSpec)}
    train, data, rest = {}, {}, {}
    for key, value in settings.items():
        target = train if key in train_keys else data if key in data_keys else rest
        target[key] = value
    if "fractions" in data:
        data["fractions"] = _fractions(data["fractions"])
    return train, data, rest


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(part) for part in str(text).split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise ConfigError(
            f"--fractions takes three numbers, TRAIN,VAL,TEST (e.g. 0.7,0.1,0.2); got {text!r}"
        )
    return values


def _check_pooling(rest: dict, is_encoder: bool, adapter) -> None:
    """What an encoder body (a masked-language model's) and a GPT body each allow."""
    if is_encoder and adapter is not None:
        raise ConfigError("adapters attach to GPT bodies; fine-tune an encoder without one")
    if is_encoder and rest.get("padding_side", "right") != "right":
        raise ConfigError("an encoder reads right-padded batches: leave --padding-side out")
    if not is_encoder and rest.get("pooling") == "first":
        raise ConfigError(
            "--pooling first is for encoders: a GPT's first token has seen only itself "
            "(use last or mean)"
        )
    if rest.get("pooler") and (not is_encoder or rest.get("pooling", "first") != "first"):
        raise ConfigError("--pooler is BERT's: it goes on an encoder with --pooling first")


def _classify(settings: dict, tensorboard: bool) -> int:
    import torch

    from gptlab.adapters import attach, freeze_base
    from gptlab.adapters.adapted import base_config, base_record
    from gptlab.commands.finetune_runs import (
        adapter_defaults,
        adapter_room,
        adapter_settings,
        check_base,
        new_run_dir,
        resumed_run,
        run_steps,
    )
    from gptlab.commands.train import fit, training_device
    from gptlab.models.encoder import Encoder
    from gptlab.pretrained import is_classifier, load_model
    from gptlab.runs import shaped_like, write_run_config
    from gptlab.tasks.classification import (
        DataSpec,
        classification_loss,
        classifier_from_body,
        evaluate_split,
        evaluator,
        prepare_data,
    )
    from gptlab.training.callbacks import standard_callbacks
    from gptlab.training.checkpoint import (
        MODEL_FILE,
        STATE_FILE,
        TOKENIZER_DIR,
        load_trainer_state,
        load_weights,
    )
    from gptlab.training.config import TrainConfig
    from gptlab.training.freezing import freeze
    from gptlab.training.trainer import Trainer

    train_over, data_over, rest = _split(settings)
    adapter = adapter_settings(rest)
    if "resume" in rest:
        run_dir = Path(rest.pop("resume"))
        saved, model, tokenizer, adapter = resumed_run(
            run_dir, "classify", {**data_over, **rest}, adapter
        )
        spec = DataSpec.from_dict(saved["data"])
        finetune = saved["finetune"]
        epochs = rest.get("epochs", finetune["epochs"])
        train_values = {**saved["train"], **train_over}
        base = saved["base"]
    else:
        spec = DataSpec(**data_over)
        run_dir = new_run_dir(rest, f"runs/classify-{Path(spec.data).stem}")
        finetune = {
            "train": adapter.to_dict()["type"] if adapter else rest.get("policy", "last-block"),
            "epochs": rest.get("epochs", EPOCHS),
            "monitor": rest.get("monitor", "loss"),
        }
        epochs = finetune["epochs"]
        if epochs <= 0:
            raise ConfigError(f"--epochs must be positive, got {epochs}")
        train_values = {**adapter_defaults(CLASSIFY_DEFAULTS, adapter), **train_over}
        pretrained, tokenizer, info = load_model(rest["model"], task="any")
        check_base(info, adapter, rest)
        body = pretrained.transformer if is_classifier(pretrained) else pretrained
        body = pretrained.encoder if info["task"] == "mlm" else body
        is_encoder = isinstance(body, Encoder)
        _check_pooling(rest, is_encoder, adapter)
        base = base_record(info, body, adapter)
        if "dropout" in rest and is_encoder:
            raise ConfigError("--dropout rebuilds a GPT body; an encoder keeps its own")
        if "dropout" in rest:
            body = shaped_like(body, dataclasses.replace(body.config, dropout=rest["dropout"]))
        model = None  # made once the classes are known, from the data

    probe = TrainConfig(**{**train_values, "max_iters": 1})  # validated before the data is read
    if model is not None:
        max_length = model.config.context_length
    else:
        max_length = body.config.context_length - adapter_room(adapter)
    names = model.head.labels if model is not None else None
    data = prepare_data(spec, tokenizer, max_length, names)
    if model is None:
        pad_id = tokenizer.eos_id if tokenizer.eos_id is not None else 0
        torch.manual_seed(probe.seed)  # the new head's initial weights: a run is its settings
        pooling = rest.get("pooling", "first" if is_encoder else "last")
        pooler = rest.get("pooler", is_encoder and pooling == "first")
        model = classifier_from_body(
            body, data.names, pad_id, pooling, rest.get("padding_side", "right"), pooler
        )
        if adapter is not None:
            model = attach(model, adapter, tokenizer)
    if adapter is not None:
        trainable, total = freeze_base(model)
    else:
        trainable, total = freeze(model, finetune["train"])

    device, group = training_device(probe)
    head = model.head
    batches = data.batches(
        "train",
        probe.batch_size,
        head.pad_id,
        head.padding_side,
        seed=probe.seed,
        micro_batches_per_step=probe.grad_accum * group.world_size,
    )
    train_values["max_iters"] = run_steps(settings, train_values, batches, epochs)
    train_cfg = TrainConfig(**train_values)
    has_val = len(data.splits["val"]) > 0
    val_batches = (
        data.batches("val", train_cfg.batch_size, head.pad_id, head.padding_side)
        if has_val
        else None
    )

    if group.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        tokenizer.save(run_dir / TOKENIZER_DIR)
        write_run_config(
            run_dir,
            base_config(model),
            train_cfg.to_dict(),
            spec.to_dict(),
            task="classify",
            classifier=head.to_dict(),
            **({"body": "encoder"} if isinstance(model.transformer, Encoder) else {}),
            finetune={**finetune, "epochs": epochs},
            base=base,
            **({"adapter": adapter.to_dict()} if adapter else {}),
        )
    torch.manual_seed(train_cfg.seed)  # dropout's draws
    trainer = Trainer(
        model,
        train_cfg,
        train_batch=lambda step, index: batches.train_batch(step, index, device),
        device=device,
        loss_fn=classification_loss,
        evaluator=evaluator(val_batches, data.names, device) if has_val else None,
        monitor=finetune["monitor"],
        callbacks=standard_callbacks(
            run_dir, is_main=group.is_main, tensorboard=tensorboard, patience=train_cfg.patience
        ),
        group=group,
    )
    if "resume" in settings:
        trainer.load_state_dict(load_trainer_state(run_dir / STATE_FILE))
    if group.is_main:
        counts = ", ".join(f"{split} {len(examples):,}" for split, examples in data.splits.items())
        truncated = sum(examples.truncated for examples in data.splits.values())
        print(
            f"fine-tuning {trainable:,} of {total:,} parameters "
            f"({adapter.describe() if adapter else finetune['train']}) "
            f"of {base['source']} to classify {', '.join(data.names)} on {device} ({trainer.dtype}); "
            f"{spec.data}: {counts} examples"
            + (f", {truncated:,} cut to {max_length} tokens" if truncated else "")
            + f"; {train_cfg.max_iters} steps ({epochs:g} epochs of {batches.batches_per_epoch} batches) -> {run_dir}",
            file=sys.stderr,
        )
    seconds = fit(trainer, group)
    if not group.is_main:
        return 0
    load_weights(model, run_dir / MODEL_FILE)
    lines = []
    for split in ("val", "test"):
        if len(data.splits[split]):
            report = evaluate_split(
                model,
                data.batches(split, train_cfg.batch_size, head.pad_id, head.padding_side),
                data.names,
                device,
                trainer.autocast,
            )
            lines.append(
                f"{split} accuracy {report['accuracy']:.2%} (macro-F1 {report['macro_f1']:.4f})"
            )
    print(
        f"done: {trainer.step} steps, {seconds:.1f} s; best checkpoint: "
        f"{'; '.join(lines) or 'no evaluation split'}; run directory {run_dir}",
        file=sys.stderr,
    )
    return 0
