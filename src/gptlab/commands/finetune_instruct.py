"""`gptlab finetune instruct`: teach a pretrained GPT to follow instructions (Alpaca prompts)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from gptlab.errors import ConfigError

INSTRUCT_EXAMPLES = """\
examples:
  gptlab finetune instruct gpt2-medium --data instruction-data --out runs/instruct  # the reference
  gptlab finetune instruct runs/gpt2-mini --data my-tasks.jsonl --epochs 3 --train-on-prompt
  gptlab finetune instruct gpt2 --data conversations.jsonl --format chat --out runs/chat
  gptlab finetune instruct --resume runs/instruct --max-iters 500
then:
  gptlab sample runs/instruct --instruction "Rewrite the sentence in passive voice." \\
      --input "The chef cooks the meal every day."
  gptlab eval runs/instruct                      # response-only loss on the test split
"""

# The reference recipe (Raschka 2024, chapter 7): batch 8, AdamW at 5e-5 with weight decay 0.1,
# two epochs over the whole model. The short warmup and cosine are gptlab's, as for classify.
INSTRUCT_DEFAULTS = dict(
    batch_size=8,
    lr=5e-5,
    min_lr=5e-6,
    warmup_iters=20,
    weight_decay=0.1,
    beta2=0.999,
    eval_interval=50,
    log_interval=10,
)
EPOCHS = 2.0
# The validation loss is over the whole split, not eval_iters batches of it.
UNUSED_TRAIN_FIELDS = ("eval_iters",)


def add_instruct_parser(tasks) -> None:
    """`finetune instruct`, a task of `gptlab finetune` (registered by commands/finetune.py)."""
    from gptlab.commands.finetune_runs import ADAPTER_EXAMPLES, add_shared_flags
    from gptlab.data.instructions import FORMATS

    S = argparse.SUPPRESS  # flags not given stay out of the namespace: the defaults layer
    parser = tasks.add_parser(
        "instruct",
        help="an instruction follower: Alpaca prompts, loss on the responses",
        description="Fine-tune every weight of a pretrained GPT (or only an adapter, with --lora "
        "or --prompt-tuning) on instruction / input / output examples written as Alpaca prompts, "
        "the loss on the response and its end-of-text only (unless --train-on-prompt). The data is split as the published reference does: the "
        "file's first 85% train, the next 10% test, the rest validate.",
        epilog=INSTRUCT_EXAMPLES + ADAPTER_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model",
        metavar="MODEL",
        nargs="?",
        help="the pretrained model: a run directory, a Hugging Face GPT-2 folder or a name (gpt2, ...)",
    )
    parser.add_argument(
        "--data",
        default=S,
        help="instruction-data, or a .json/.jsonl file (default instruction-data)",
    )
    parser.add_argument(
        "--out", default=S, help="run directory to create (default runs/instruct-<data>)"
    )
    parser.add_argument(
        "--resume", default=S, metavar="RUN_DIR", help="continue the run in RUN_DIR"
    )
    parser.add_argument(
        "--format",
        default=S,
        choices=FORMATS,
        help="the file's entries: alpaca {instruction, input, output}, or chat {messages: "
        "[system?, user, assistant]} (default alpaca)",
    )
    parser.add_argument(
        "--train-on-prompt",
        default=S,
        action="store_true",
        help="learn the prompt's tokens too, not only the response's",
    )
    parser.add_argument(
        "--epochs",
        default=S,
        type=float,
        help=f"passes over the training split (default {EPOCHS:g}); --max-iters overrides",
    )
    add_shared_flags(parser, INSTRUCT_DEFAULTS, UNUSED_TRAIN_FIELDS)
    parser.set_defaults(run=run_instruct, command="finetune instruct")


def run_instruct(args: argparse.Namespace) -> int:
    from gptlab.commands.finetune_runs import given_settings

    return _instruct(given_settings(args), tensorboard=not args.no_tensorboard)


def _instruct(settings: dict, tensorboard: bool) -> int:
    import torch

    from gptlab.adapters import attach, freeze_base
    from gptlab.adapters.adapted import base_config, base_record
    from gptlab.commands.finetune_runs import (
        adapter_defaults,
        adapter_settings,
        check_base,
        new_run_dir,
        resumed_run,
        run_steps,
    )
    from gptlab.commands.train import fit, training_device
    from gptlab.data.instructions import padding_report
    from gptlab.pretrained import load_model
    from gptlab.runs import write_run_config
    from gptlab.tasks.instruction import InstructionSpec, evaluator, prepare_data, response_loss
    from gptlab.training.callbacks import standard_callbacks
    from gptlab.training.checkpoint import (
        MODEL_FILE,
        STATE_FILE,
        TOKENIZER_DIR,
        load_trainer_state,
        load_weights,
    )
    from gptlab.training.config import TrainConfig
    from gptlab.training.trainer import Trainer

    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    train_over = {key: value for key, value in settings.items() if key in train_keys}
    rest = {key: value for key, value in settings.items() if key not in train_keys}
    data_over = {key: rest.pop(key) for key in ("data", "format", "train_on_prompt") if key in rest}
    adapter = adapter_settings(rest)
    if "resume" in rest:
        run_dir = Path(rest.pop("resume"))
        saved, model, tokenizer, adapter = resumed_run(
            run_dir, "instruct", {**data_over, **rest}, adapter
        )
        spec = InstructionSpec.from_dict(saved["data"])
        finetune = saved["finetune"]
        epochs = rest.get("epochs", finetune["epochs"])
        train_values = {**saved["train"], **train_over}
        base = saved["base"]
    else:
        spec = InstructionSpec(**data_over)
        run_dir = new_run_dir(rest, f"runs/instruct-{Path(spec.data).stem}")
        epochs = rest.get("epochs", EPOCHS)
        if epochs <= 0:
            raise ConfigError(f"--epochs must be positive, got {epochs}")
        finetune = {"train": adapter.to_dict()["type"] if adapter else "all", "epochs": epochs}
        train_values = {**adapter_defaults(INSTRUCT_DEFAULTS, adapter), **train_over}
        model, tokenizer, info = load_model(rest["model"], task="lm")
        check_base(info, adapter, rest)
        base = base_record(info, model, adapter)
        if adapter is not None:
            model = attach(model, adapter, tokenizer)
    if adapter is not None:  # before the trainer: its optimizer takes what trains
        trainable, total = freeze_base(model)

    probe = TrainConfig(**{**train_values, "max_iters": 1})  # validated before the data is read
    if tokenizer.eos_id is None:
        raise ConfigError("instruction tuning needs a tokenizer with an end-of-text token")
    context = model.config.context_length
    data = prepare_data(spec, tokenizer, context)
    pad_id = tokenizer.eos_id  # any id would do: padded positions have no target

    device, group = training_device(probe)
    batches = data.batches(
        "train",
        probe.batch_size,
        pad_id,
        seed=probe.seed,
        micro_batches_per_step=probe.grad_accum * group.world_size,
    )
    train_values["max_iters"] = run_steps(settings, train_values, batches, epochs)
    train_cfg = TrainConfig(**train_values)
    has_val = len(data.splits["val"]) > 0
    val_batches = data.batches("val", train_cfg.batch_size, pad_id) if has_val else None

    if group.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        tokenizer.save(run_dir / TOKENIZER_DIR)
        sizes = {split: len(examples) for split, examples in data.splits.items()}
        write_run_config(
            run_dir,
            base_config(model),
            train_cfg.to_dict(),
            {**spec.to_dict(), "sizes": sizes},
            task="instruct",
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
        evaluator=evaluator(val_batches, device) if has_val else None,
        callbacks=standard_callbacks(
            run_dir, is_main=group.is_main, tensorboard=tensorboard, patience=train_cfg.patience
        ),
        group=group,
    )
    if "resume" in settings:
        trainer.load_state_dict(load_trainer_state(run_dir / STATE_FILE))
    if group.is_main:
        counts = ", ".join(f"{split} {len(examples):,}" for split, examples in data.splits.items())
        cut = (f", {data.truncated:,} cut to {context} tokens" if data.truncated else "") + (
            f", {data.dropped:,} left out (the prompt fills the context)" if data.dropped else ""
        )
        learned = "prompts and responses" if spec.train_on_prompt else "responses only"
        padding = padding_report(data.splits["train"].lengths, batches.batch_size, probe.seed)
        print(
            f"instruction-tuning {base['source']}"
            + (f" ({trainable:,} of {total:,} parameters: {adapter.describe()})" if adapter else "")
            + f" on {device} ({trainer.dtype}), loss on {learned}; "
            f"{spec.data}: {counts} examples{cut}; {train_cfg.max_iters} steps "
            f"({epochs:g} epochs of {batches.batches_per_epoch} batches, bucketed by length: "
            f"{padding['bucketed']:,} padding tokens an epoch, not {padding['pad_to_longest']:,}) "
            f"-> {run_dir}",
            file=sys.stderr,
        )
    seconds = fit(trainer, group)
    if not group.is_main:
        return 0
    load_weights(model, run_dir / MODEL_FILE)
    lines = [
        f"{split} loss {response_loss(model, data.batches(split, train_cfg.batch_size, pad_id), device, trainer.autocast)['loss']:.4f}"
        for split in ("val", "test")
        if len(data.splits[split])
    ]
    print(
        f"done: {trainer.step} steps, {seconds:.1f} s; best checkpoint: "
        f"{'; '.join(lines) or 'no evaluation split'}; run directory {run_dir}",
        file=sys.stderr,
    )
    return 0
