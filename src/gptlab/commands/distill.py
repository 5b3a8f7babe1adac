"""`gptlab distill`: train a small student GPT on a larger teacher's predictions
(`gptlab.distillation`), and write a language-model run directory like `gptlab train`'s."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from gptlab.errors import ConfigError

EXAMPLES = """\
examples:
  gptlab distill --teacher runs/shakespeare --out runs/student            # half the teacher's layers
  gptlab distill --teacher runs/shakespeare --init-from-teacher --out runs/distil   # DistilGPT2 style
  gptlab distill --teacher runs/shakespeare --student-preset shakespeare-char-cpu \\
      --context-length 256 --alpha 0.9 --temperature 2 --out runs/small
  gptlab distill --teacher runs/gpt2-mini --student-config student.toml --data english-mix --out runs/s
  gptlab distill --resume runs/student --max-iters 8000
then, as with any language-model run:
  gptlab sample runs/student --prompt "ROMEO:"
  gptlab eval runs/student
  gptlab export runs/student --out exported/student
  gptlab quantize runs/student --method int8-weight --out runs/student-int8
"""
DISTILL_KEYS = ("alpha", "temperature", "cosine", "init_from_teacher")


def add_parser(subparsers) -> None:
    from gptlab.commands.train import add_field_flag
    from gptlab.config import PRESETS, GPTConfig
    from gptlab.training.config import DistillConfig, TrainConfig

    parser = subparsers.add_parser(
        "distill",
        help="train a small student GPT on a teacher's predictions (knowledge distillation)",
        description="Knowledge distillation: train a student GPT on a corpus with the loss "
        "alpha * KL(teacher || student, both softened by the temperature) * T^2 + "
        "(1 - alpha) * cross-entropy on the labels, optionally plus a cosine loss on the final "
        "hidden states. The teacher's logits are computed batch by batch, never stored. The "
        "student's shape: --student-preset, then --student-config, then the model flags; with "
        "none, the teacher's shape with half its layers. The student shares the teacher's "
        "tokenizer; its run directory is a language-model run (sample, eval, export, quantize).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    S = argparse.SUPPRESS  # flags not given stay out of the namespace, so settings layer
    parser.add_argument(
        "--teacher",
        default=S,
        metavar="MODEL",
        help="the teacher language model: a run directory, a Hugging Face GPT-2 folder or a name",
    )
    parser.add_argument(
        "--student-preset", default=S, choices=list(PRESETS), help="the student's shape"
    )
    parser.add_argument(
        "--student-config",
        default=S,
        metavar="FILE",
        help="TOML or JSON file of the student's model fields (n_layer, n_embd, ...)",
    )
    parser.add_argument(
        "--data",
        default=S,
        help="a text file or dataset name (default: the teacher run's corpus)",
    )
    parser.add_argument(
        "--val-fraction",
        default=S,
        type=float,
        help="share of the corpus kept for validation (default: the teacher run's, or 0.1)",
    )
    parser.add_argument("--out", default=S, help="run directory to create (default runs/distill)")
    parser.add_argument(
        "--resume", default=S, metavar="RUN_DIR", help="continue the run in RUN_DIR"
    )
    parser.add_argument(
        "--no-tensorboard", action="store_true", help="do not write TensorBoard events"
    )
    distill = parser.add_argument_group("distillation")
    for field in dataclasses.fields(DistillConfig):
        add_field_flag(distill, field, DistillConfig)
    model = parser.add_argument_group(
        "student model",
        "override the student's shape; the defaults shown are GPTConfig's, but a student starts "
        "from --student-preset, --student-config, or else the teacher's shape with half its layers",
    )
    for field in dataclasses.fields(GPTConfig):
        if field.name != "vocab_size":  # the teacher's tokenizer decides it
            add_field_flag(model, field, GPTConfig)
    train = parser.add_argument_group("training (default: the teacher run's settings)")
    for field in dataclasses.fields(TrainConfig):
        add_field_flag(train, field, TrainConfig)
    parser.set_defaults(run=run, command="distill")


def run(args: argparse.Namespace) -> int:
    settings = {
        key: value
        for key, value in vars(args).items()
        if key not in ("run", "command", "no_tensorboard")
    }
    if "resume" in settings:
        other, _, model_over, distill_over = split(settings)
        if set(other) - {"resume"} or model_over or distill_over:
            raise ConfigError(
                "--resume continues a run as it was: only training settings (e.g. --max-iters) may change"
            )
    elif "teacher" not in settings:
        raise ConfigError("name the teacher: --teacher RUN_DIR_OR_MODEL")
    return _distill(settings, tensorboard=not args.no_tensorboard)


def split(settings: dict) -> tuple[dict, dict, dict, dict]:
    """(other, train, model, distill) settings."""
    from gptlab.config import GPTConfig
    from gptlab.training.config import TrainConfig

    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    model_keys = {f.name for f in dataclasses.fields(GPTConfig)}
    parts: tuple[dict, dict, dict, dict] = ({}, {}, {}, {})
    for key, value in settings.items():
        index = (
            1 if key in train_keys else 2 if key in model_keys else 3 if key in DISTILL_KEYS else 0
        )
        parts[index][key] = value
    return parts


def student_config(teacher_config, settings: dict, model_over: dict):
    """The student's GPTConfig: preset, then config file, then flags; with none of them the
    teacher's shape with half its layers. Its vocabulary is always the teacher's."""
    from gptlab.commands.train import load_settings_file
    from gptlab.config import PRESETS, GPTConfig

    if "student_preset" in settings:
        values = dict(PRESETS[settings["student_preset"]])
    elif "student_config" not in settings:
        values = {
            **teacher_config.to_dict(),
            "n_layer": max(1, teacher_config.n_layer // 2),
        }
    else:
        values = {}
    if "student_config" in settings:
        values.update(load_settings_file(settings["student_config"]))
    values.update(model_over)
    values["vocab_size"] = teacher_config.vocab_size
    return GPTConfig.from_dict(values)


def train_defaults(info: dict, settings: dict) -> dict:
    """Training settings before the flags: the teacher run's (the same budget, by default), or
    for a student preset with a job of its own in `gptlab train`, that job's."""
    from gptlab.commands.train import JOB_DEFAULTS
    from gptlab.training.config import TrainConfig

    known = {f.name for f in dataclasses.fields(TrainConfig)}
    values = dict(info.get("config", {}).get("train", {}))
    job = JOB_DEFAULTS.get(settings.get("student_preset", ""), {})
    values.update({key: value for key, value in job.items() if key in known})
    return values


def _load_teacher(spec: str):
    from gptlab.pretrained import load_model

    teacher, tokenizer, info = load_model(spec)
    if info["task"] != "lm":
        raise ConfigError(f"the teacher must be a language model; {spec} is a {info['task']} model")
    return teacher, tokenizer, info


def _distill(settings: dict, tensorboard: bool) -> int:
    import torch

    from gptlab.commands.finetune_runs import new_run_dir
    from gptlab.commands.train import fit_and_report, lm_trainer, token_data, training_device
    from gptlab.config import GPTConfig
    from gptlab.data.text import resolve_text
    from gptlab.distillation import (
        DistillConfig,
        check_compatible,
        distill_loss_fn,
        init_from_teacher,
    )
    from gptlab.models.gpt import GPT
    from gptlab.runs import read_run_config, write_run_config
    from gptlab.training.callbacks import standard_callbacks
    from gptlab.training.checkpoint import STATE_FILE, TOKENIZER_DIR, load_trainer_state
    from gptlab.training.config import TrainConfig
    from gptlab.training.trainer import default_loss

    rest, train_over, model_over, distill_over = split(settings)
    if "resume" in rest:
        run_dir = Path(rest["resume"])
        saved = read_run_config(run_dir)
        if "distill" not in saved:
            raise ConfigError(
                f"{run_dir} is not a distillation run: resume it with its own command"
            )
        teacher, tokenizer, info = _load_teacher(saved["distill"]["teacher"]["source"])
        record = saved["distill"]
        distill_cfg = DistillConfig(**{key: record[key] for key in DISTILL_KEYS})
        model_cfg = GPTConfig.from_dict(saved["model"])
        train_cfg = TrainConfig(**{**saved["train"], **train_over})
        data_cfg = saved["data"]
    else:
        teacher, tokenizer, info = _load_teacher(rest["teacher"])
        distill_cfg = DistillConfig(**distill_over)
        model_cfg = student_config(teacher.config, rest, model_over)
        train_cfg = TrainConfig(**{**train_defaults(info, rest), **train_over})
        teacher_data = info.get("config", {}).get("data", {})
        if "data" not in rest and "data" not in teacher_data:
            raise ConfigError(
                f"name the corpus to distill on: --data (the teacher {rest['teacher']} records none)"
            )
        data_cfg = {
            "data": rest.get("data", teacher_data.get("data")),
            "tokenizer": "teacher",  # the teacher's own, saved in the run directory
            "val_fraction": rest.get("val_fraction", teacher_data.get("val_fraction", 0.1)),
        }
        run_dir = new_run_dir(rest, "runs/distill")
    check_compatible(teacher.config, model_cfg, distill_cfg.init_from_teacher, distill_cfg.cosine)

    device, group = training_device(train_cfg)
    if group.enabled and distill_cfg.cosine > 0:
        raise ConfigError(
            "the cosine loss reads the student's hidden states, which DDP does not pass on: run it in one process"
        )
    text_path = resolve_text(data_cfg["data"])
    data = token_data(text_path, tokenizer, data_cfg["val_fraction"], model_cfg, train_cfg)
    teacher.to(device)

    torch.manual_seed(train_cfg.seed)
    student = GPT(model_cfg)
    if "resume" in rest:  # the trainer state fills the student
        layers = saved["distill"]["teacher_layers"]
    else:
        layers = init_from_teacher(student, teacher) if distill_cfg.init_from_teacher else None
    record = {
        **distill_cfg.to_dict(),
        "teacher": {
            # A folder by its absolute path, so that --resume finds it from anywhere.
            "source": info["source"]
            if info["kind"] == "hub"
            else str(Path(info["source"]).resolve()),
            "kind": info["kind"],
            "n_layer": teacher.config.n_layer,
            "n_embd": teacher.config.n_embd,
            "params": teacher.num_params(),
        },
        "teacher_layers": layers,
    }
    if group.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        tokenizer.save(run_dir / TOKENIZER_DIR)
        write_run_config(
            run_dir, model_cfg, train_cfg.to_dict(), data_cfg, task="lm", distill=record
        )
    callbacks = standard_callbacks(
        run_dir, is_main=group.is_main, tensorboard=tensorboard, patience=train_cfg.patience
    )
    # The teacher's forward is a large part of a step's work: compiled like the student when asked
    # (without CUDA graphs: its logits are read after the student's graph has replayed).
    use_compile = train_cfg.compile and distill_cfg.cosine == 0
    teacher_step = torch.compile(teacher) if use_compile else teacher
    trainer = lm_trainer(
        student,
        train_cfg,
        data,
        device,
        callbacks,
        group,
        loss_fn=distill_loss_fn(teacher_step, distill_cfg),
        eval_loss_fn=default_loss,  # the student's own cross-entropy picks the best checkpoint
    )
    if "resume" in rest:
        trainer.load_state_dict(load_trainer_state(run_dir / STATE_FILE))
    if group.is_main:
        start = f", blocks {layers} of the teacher copied" if layers else ""
        print(
            f"distilling {info['source']} ({teacher.num_params() / 1e6:.2f}M parameters, "
            f"{teacher.config.n_layer} layers) into {student.num_params() / 1e6:.2f}M parameters "
            f"({model_cfg.n_layer} layers{start}) on {device} ({trainer.dtype}): alpha "
            f"{distill_cfg.alpha:g}, T {distill_cfg.temperature:g}, cosine {distill_cfg.cosine:g}; "
            f"{len(data.train):,} train / {len(data.val):,} val tokens, "
            f"{train_cfg.max_iters} steps -> {run_dir}",
            file=sys.stderr,
        )
    fit_and_report(trainer, group, run_dir)
    return 0
