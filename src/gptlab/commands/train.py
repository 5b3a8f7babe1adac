"""`gptlab train`: pretrain a GPT on a text corpus and write a run directory."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from gptlab.errors import ConfigError

EXAMPLES = """\
examples:
  gptlab train --preset shakespeare-char-cpu --out runs/shakespeare-cpu   # ~2 min on 2 CPU cores
  gptlab train --preset shakespeare-char-cpu --threads 2 --dtype float32  # not the CPU defaults
  gptlab train --preset shakespeare-char --out runs/shakespeare           # the default job, for a GPU
  gptlab train --preset gpt2-mini --out runs/gpt2-mini --compile          # the local GPT-2-BPE base
  gptlab train --data my_corpus.txt --tokenizer gpt2 --preset tiny --max-iters 200
  gptlab train --config train.toml --lr 3e-4
  gptlab train --resume runs/shakespeare --max-iters 8000
  gptlab train --objective mlm --preset shakespeare-char-cpu --out runs/mlm-cpu   # an encoder
  torchrun --nproc_per_node=2 -m gptlab train --preset shakespeare-char --out runs/ddp
"""

# What a preset means for training, beyond the model's shape: the settings of the job it names.
JOB_DEFAULTS: dict[str, dict] = {
    # Weight decay 1.0, not GPT-2's 0.1: 10.7M parameters on 1M characters overfit after ~2000
    # steps, and stronger decay holds the validation minimum lower and later (H100, 5000 steps,
    # best val loss over seeds 1 and 2: 0.1 -> 1.480 / 1.473, 0.3 -> 1.466 / 1.463,
    # 0.6 -> 1.457 / 1.460, 1.0 -> 1.452 / 1.443; benchmarks/train_shakespeare.py).
    "shakespeare-char": dict(tokenizer="char", weight_decay=1.0),
    # dtype "fast": bf16 autocast on a CPU with AMX, where it made a step 1.6x cheaper.
    "shakespeare-char-cpu": dict(
        tokenizer="char",
        dtype="fast",
        max_iters=2000,
        batch_size=12,
        eval_iters=20,
        lr=1e-3,
        min_lr=1e-4,
        warmup_iters=100,
    ),
    "tiny": dict(
        tokenizer="char",
        max_iters=200,
        batch_size=8,
        eval_interval=50,
        eval_iters=5,
        log_interval=10,
    ),
}
# The local base (docs/local-base.md). 3000 steps of 32 x 256 tokens are ~25 passes over the
# 0.99M training tokens of english-mix, and 30M parameters can learn those by heart, so the run
# stops after 4 evaluations (1000 steps) without a better validation loss; GPT-2's weight decay.
# The learning rates and beta2 follow nanoGPT's shakespeare-char job, of the same 6 x 384 shape.
JOB_DEFAULTS["gpt2-mini"] = dict(
    tokenizer="gpt2",
    data="english-mix",
    batch_size=32,
    max_iters=3000,
    lr=1e-3,
    min_lr=1e-4,
    warmup_iters=200,
    weight_decay=0.1,
    beta2=0.99,
    eval_interval=250,
    eval_iters=50,
    patience=4,
)
# The GPT-2 shapes train on GPT-2's BPE with GPT-2's optimizer settings (Radford et al. 2019).
for _name in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"):
    JOB_DEFAULTS[_name] = dict(
        tokenizer="gpt2", batch_size=12, lr=6e-4, min_lr=6e-5, beta2=0.95, warmup_iters=2000
    )
DATA_KEYS = ("data", "tokenizer", "val_fraction")


def add_parser(subparsers) -> None:
    from gptlab.config import PRESETS, GPTConfig
    from gptlab.training.config import TrainConfig

    parser = subparsers.add_parser(
        "train",
        help="pretrain a GPT on a text corpus",
        description="Train a GPT on a text corpus (TinyShakespeare by default) and write a run directory "
        "with checkpoints, metrics.jsonl and TensorBoard logs. Settings come from the preset, then "
        "--config FILE, then the flags.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    S = argparse.SUPPRESS  # flags not given stay out of the namespace, so layering works
    parser.add_argument(
        "--preset",
        default=S,
        choices=list(PRESETS),
        help="model shape and job settings (default: shakespeare-char)",
    )
    parser.add_argument("--out", default=S, help="run directory to create (default: runs/<preset>)")
    parser.add_argument(
        "--resume",
        default=S,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR where it stopped",
    )
    parser.add_argument(
        "--config",
        default=S,
        metavar="FILE",
        help="TOML or JSON file of settings (flag names as keys)",
    )
    parser.add_argument(
        "--data", default=S, help="a text file or a dataset name (default: tinyshakespeare)"
    )
    parser.add_argument(
        "--tokenizer",
        default=S,
        choices=["char", "gpt2"],
        help="char (built from the corpus) or gpt2 BPE",
    )
    parser.add_argument(
        "--val-fraction",
        default=S,
        type=float,
        help="share of the corpus kept for validation (default 0.1)",
    )
    parser.add_argument(
        "--objective",
        default=S,
        choices=["lm", "mlm"],
        help="lm: a GPT predicts the next token (default); mlm: a BERT-style encoder of the "
        "preset's shape fills in masked tokens",
    )
    parser.add_argument(
        "--no-tensorboard", action="store_true", help="do not write TensorBoard events"
    )
    model = parser.add_argument_group("model (override the preset)")
    for field in dataclasses.fields(GPTConfig):
        add_field_flag(model, field, GPTConfig)
    train = parser.add_argument_group("training")
    for field in dataclasses.fields(TrainConfig):
        add_field_flag(train, field, TrainConfig)
    parser.set_defaults(run=run, command="train")


def add_field_flag(group, field: dataclasses.Field, cls, defaults: dict | None = None) -> None:
    """A flag for a config field, absent from the namespace unless given (so settings layer);
    `defaults` are the values a command uses in place of the field's own, shown in the help."""
    flag = "--" + field.name.replace("_", "-")
    default = (defaults or {}).get(field.name, field.default)
    if isinstance(default, bool):
        group.add_argument(
            flag,
            default=argparse.SUPPRESS,
            action=argparse.BooleanOptionalAction,
            help=f"(default {default})",
        )
        return
    # An optional number (`int | None = None`) takes its type from the annotation.
    kind = (
        type(field.default)
        if field.default is not None
        else (int if str(field.type).startswith("int") else str)
    )
    choices = field.metadata.get("choices")
    group.add_argument(
        flag,
        default=argparse.SUPPRESS,
        type=kind,
        choices=choices,
        metavar=None if choices else field.name.upper(),
        help=f"(default {default})",
    )


def run(args: argparse.Namespace) -> int:
    settings = vars(args).copy()
    for key in ("run", "command", "no_tensorboard"):
        settings.pop(key, None)
    if "resume" in settings:
        return _train(
            settings, resume=Path(settings.pop("resume")), tensorboard=not args.no_tensorboard
        )
    return _train(settings, resume=None, tensorboard=not args.no_tensorboard)


def load_settings_file(path: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no config file at {path}")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            import tomllib

            values = tomllib.loads(text)
        else:
            values = json.loads(text)
    except (ValueError, ModuleNotFoundError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from error
    return {key.replace("-", "_"): value for key, value in values.items()}


def split_settings(settings: dict) -> tuple[dict, dict, dict]:
    """Split flat settings into (model, train, data) dicts, rejecting unknown names."""
    from gptlab.config import GPTConfig
    from gptlab.training.config import TrainConfig

    model_keys = {f.name for f in dataclasses.fields(GPTConfig)}
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    model, train, data = {}, {}, {}
    for key, value in settings.items():
        if key in model_keys:
            model[key] = value
        elif key in train_keys:
            train[key] = value
        elif key in DATA_KEYS:
            data[key] = value
        elif key not in ("preset", "out", "config", "objective"):
            raise ConfigError(f"unknown setting {key!r}")
    return model, train, data


def _train(settings: dict, resume: Path | None, tensorboard: bool) -> int:
    import torch

    from gptlab.config import EncoderConfig, GPTConfig
    from gptlab.data.text import resolve_text
    from gptlab.models.encoder import MaskedLM
    from gptlab.models.gpt import GPT
    from gptlab.runs import read_run_config, write_run_config
    from gptlab.tasks.masked_lm import mlm_trainer
    from gptlab.tokenizers import get_tokenizer, load_tokenizer, with_mask_token
    from gptlab.training.callbacks import standard_callbacks
    from gptlab.training.checkpoint import STATE_FILE, TOKENIZER_DIR, load_trainer_state
    from gptlab.training.config import TrainConfig

    if resume is not None:
        saved = read_run_config(resume)
        if "finetune" in saved:  # its own command resumes it, and keeps its base and task sections
            task = saved.get("task", "lm")
            raise ConfigError(
                f"{resume} is a fine-tuning run: resume it with `gptlab finetune {task} --resume {resume}`"
            )
        if "distill" in saved:  # resumed without its teacher, it would train on labels alone
            raise ConfigError(
                f"{resume} is a distillation run: resume it with `gptlab distill --resume {resume}`"
            )
        model_over, train_over, data_over = split_settings(settings)
        changed = ("preset", "config", "objective")
        if model_over or data_over or any(key in settings for key in changed):
            raise ConfigError(
                "--resume continues a run as it was: only training settings (e.g. --max-iters) may change"
            )
        objective = "mlm" if saved.get("task") == "mlm" else "lm"
        model_cfg = (EncoderConfig if objective == "mlm" else GPTConfig).from_dict(saved["model"])
        train_cfg = TrainConfig(**{**saved["train"], **train_over})
        data_cfg = saved["data"]
        run_dir = resume
    else:
        preset = settings.get("preset", "shakespeare-char")
        layered = dict(JOB_DEFAULTS.get(preset, {}))
        if "config" in settings:
            layered.update(load_settings_file(settings["config"]))
            preset = layered.pop("preset", preset)
        layered.update(settings)
        layered.pop("preset", None)
        objective = layered.pop("objective", "lm")
        model_over, train_over, data_cfg = split_settings(layered)
        data_cfg = {"data": "tinyshakespeare", "tokenizer": "char", "val_fraction": 0.1, **data_cfg}
        train_cfg = TrainConfig(**train_over)
        run_dir = Path(settings.get("out", f"runs/{preset}"))
        if (run_dir / STATE_FILE).exists():
            raise ConfigError(
                f"{run_dir} already holds a run: resume it with --resume {run_dir}, or choose another --out"
            )

    device, group = training_device(train_cfg)
    text_path = resolve_text(data_cfg["data"])
    if resume is not None:
        tokenizer = load_tokenizer(run_dir / TOKENIZER_DIR)
    else:
        tokenizer = get_tokenizer(data_cfg["tokenizer"], text=text_path.read_text(encoding="utf-8"))
        if objective == "mlm":
            tokenizer = with_mask_token(tokenizer)
        model_cfg = GPTConfig.from_preset(
            preset, **{**model_over, "vocab_size": tokenizer.vocab_size}
        )
        if objective == "mlm":  # an encoder of the preset's shape
            model_cfg = EncoderConfig.from_gpt(model_cfg, mask_id=tokenizer.mask_id)
    data = token_data(text_path, tokenizer, data_cfg["val_fraction"], model_cfg, train_cfg)

    torch.manual_seed(train_cfg.seed)
    model = MaskedLM(model_cfg) if objective == "mlm" else GPT(model_cfg)

    if group.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume is None:
            tokenizer.save(run_dir / TOKENIZER_DIR)
        write_run_config(run_dir, model_cfg, train_cfg.to_dict(), data_cfg, task=objective)
    callbacks = standard_callbacks(
        run_dir, is_main=group.is_main, tensorboard=tensorboard, patience=train_cfg.patience
    )
    if objective == "mlm":
        trainer = mlm_trainer(model, train_cfg, data, tokenizer, device, callbacks, group)
    else:
        trainer = lm_trainer(model, train_cfg, data, device, callbacks, group)
    if resume is not None:
        trainer.load_state_dict(load_trainer_state(run_dir / STATE_FILE))
    if group.is_main:
        print(
            f"training {model.num_params() / 1e6:.2f}M parameters on {device} ({trainer.dtype}"
            f"{_threads_note(device)}), "
            f"{len(data.train):,} train / {len(data.val):,} val tokens, {train_cfg.max_iters} steps -> {run_dir}",
            file=sys.stderr,
        )
    fit_and_report(trainer, group, run_dir)
    return 0


def _threads_note(device) -> str:
    import torch

    if device.type != "cpu":
        return ""
    threads = torch.get_num_threads()
    return f", {threads} thread{'s' if threads > 1 else ''}"


# -- what pretraining shares with domain fine-tuning (gptlab.commands.finetune_lm) ---------


def training_device(train_cfg):
    """(device, process group): the device asked for, and this process's GPU under torchrun."""
    import torch

    from gptlab.device import resolve_device
    from gptlab.training.distributed import init_from_env

    device = resolve_device(train_cfg.device)
    group = init_from_env(device.type)
    if group.enabled and device.type == "cuda":
        device = torch.device("cuda", group.local_rank)
    return device, group


def token_data(text_path: Path, tokenizer, val_fraction: float, model_cfg, train_cfg):
    """The corpus tokenized and split, checked now (with a clear message) to hold one window of
    the model's context in the train split, and in the val split when training evaluates."""
    from gptlab.data.text import TokenData

    data = TokenData.from_file(text_path, tokenizer, val_fraction=val_fraction)
    data.split_range("train", model_cfg.context_length)
    if train_cfg.eval_interval:
        data.split_range("val", model_cfg.context_length)
    return data


def lm_trainer(model, train_cfg, data, device, callbacks, group, **losses):
    """A Trainer of a language model on random windows of `data`'s train split, evaluated on
    evenly spread windows of its val split; `losses` (loss_fn, eval_loss_fn) replace the
    model's own loss (as distillation does)."""
    from gptlab.training.trainer import Trainer

    block = model.config.context_length
    return Trainer(
        model,
        train_cfg,
        train_batch=lambda step, index: data.train_batch(
            step, index, train_cfg.batch_size, block, train_cfg.seed, device
        ),
        eval_batches=(
            (
                lambda: data.eval_batches(
                    "val", train_cfg.batch_size, block, train_cfg.eval_iters, device
                )
            )
            if train_cfg.eval_interval
            else None
        ),
        device=device,
        callbacks=callbacks,
        group=group,
        **losses,
    )


def fit_and_report(trainer, group, run_dir) -> None:
    """`fit`, then the line that ends a language-model run: steps, best val loss, time, where."""
    seconds = fit(trainer, group)
    if group.is_main:
        best = f"best val loss {trainer.best_metric:.4f}, " if trainer.evaluated else ""
        print(
            f"done: {trainer.step} steps, {best}{seconds:.1f} s; run directory {run_dir}",
            file=sys.stderr,
        )


def fit(trainer, group) -> float:
    """Train to the end, leave the process group, and return the seconds it took."""
    import time

    from gptlab.training.distributed import shutdown

    started = time.perf_counter()
    try:
        trainer.fit()
    finally:
        shutdown(group)
    if trainer.device.type == "cuda" and group.is_main:
        import sys

        import torch

        peak = torch.cuda.max_memory_allocated(trainer.device) / 2**20
        print(f"peak GPU memory: {peak:,.0f} MiB", file=sys.stderr)  # what a QLoRA base saves
    return time.perf_counter() - started
