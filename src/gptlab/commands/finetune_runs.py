"""What every `gptlab finetune TASK` does the same way: read its flags, start a new run
directory or resume one of its own task."""

from __future__ import annotations

import argparse
from pathlib import Path

from gptlab.errors import ConfigError

# How an error names a task's runs.
RUN_NAMES = {
    "classify": "a classification",
    "lm": "a domain fine-tuning",
    "instruct": "an instruction",
}


def given_settings(args: argparse.Namespace) -> dict:
    """The flags given (the others are absent or None), with MODEL or --resume, not both."""
    settings = {
        key: value
        for key, value in vars(args).items()
        if key not in ("run", "command", "no_tensorboard") and value is not None
    }
    if "resume" in settings:
        if "model" in settings:
            raise ConfigError("give MODEL or --resume RUN_DIR, not both")
    elif "model" not in settings:
        raise ConfigError("name the pretrained MODEL to fine-tune (e.g. gpt2, or a run directory)")
    return settings


def resumed_config(run_dir: Path, task: str, changed: dict, adapter=None) -> dict:
    """The config.json of the fine-tuning run of `task` in `run_dir`; `changed` holds the
    settings given besides training ones, of which only --epochs may change on resume (an
    adapter given again is a change too)."""
    from gptlab.runs import read_run_config, run_task

    saved = read_run_config(run_dir)
    if "finetune" not in saved or run_task(saved) != task:
        raise ConfigError(f"{run_dir} is not {RUN_NAMES[task]} run: resume it with its own command")
    if set(changed) - {"epochs"} or adapter is not None:
        raise ConfigError(
            "--resume continues a run as it was: only training settings (e.g. --max-iters) may change"
        )
    return saved


def check_base(info: dict, adapter, rest: dict) -> None:
    """Refuse what fine-tuning cannot do with a quantized base. An adapter over a base of
    `int8-weight` or `int4-weight` trains (QLoRA: the base stays quantized and frozen); the
    integer weights themselves cannot train, and a method that rounds activations on their way
    in (int8-dynamic, int8-static, fp8) lets no gradient reach an adapter below a quantized
    layer."""
    from gptlab.quantization import METHODS

    quantization = info.get("config", {}).get("quantization")
    if not quantization:
        return
    method, source = quantization["method"], quantization.get("source", "the float model")
    if adapter is None:
        raise ConfigError(
            f"{info['source']} is quantized ({method}): its integer weights cannot train; add "
            f"--lora or --prompt-tuning to train an adapter over it, or fine-tune its source, {source}"
        )
    if METHODS[method].activations:
        raise ConfigError(
            f"{info['source']} is quantized with {method}, which rounds activations, so no "
            "gradient reaches an adapter through it: quantize with int8-weight or int4-weight "
            "for QLoRA"
        )
    if "dropout" in rest:
        raise ConfigError(
            "--dropout rebuilds the model, which a quantized base cannot be: leave it out"
        )


def resumed_run(run_dir: Path, task: str, changed: dict, adapter=None):
    """(config, model, tokenizer, adapter config or None) of the `task` run in `run_dir`, to
    resume: its model rebuilt as the config says (with its base and adapter, for an adapter
    run), the trainer state loading into it afterwards."""
    from gptlab.adapters import adapter_config
    from gptlab.runs import build_model
    from gptlab.tokenizers import load_tokenizer
    from gptlab.training.checkpoint import TOKENIZER_DIR

    saved = resumed_config(run_dir, task, changed, adapter)
    adapter = adapter_config(saved["adapter"]) if "adapter" in saved else None
    return saved, build_model(saved), load_tokenizer(run_dir / TOKENIZER_DIR), adapter


def new_run_dir(settings: dict, default: str) -> Path:
    """--out (or `default`), which must not hold a run already: that one is resumed, not replaced."""
    from gptlab.training.checkpoint import STATE_FILE

    run_dir = Path(settings.get("out", default))
    if (run_dir / STATE_FILE).exists():
        raise ConfigError(
            f"{run_dir} already holds a run: resume it with --resume {run_dir}, or choose another --out"
        )
    return run_dir


def run_steps(settings: dict, train_values: dict, batches, epochs: float) -> int:
    """A run's length: --max-iters, else --epochs of `batches`; a resumed run keeps the length
    it was started with (in `train_values`) unless one of them is given again."""
    if "max_iters" in settings or ("resume" in settings and "epochs" not in settings):
        return train_values["max_iters"]
    return batches.steps_for(epochs)


# -- adapters: the same flags and the same steps in every fine-tuning task ---------------------

ADAPTER_EXAMPLES = """\
with an adapter (the base stays frozen; the run saves only the adapter and any new head):
  --lora                                     r=16, alpha=16, dropout=0.05 on c_attn, c_proj, c_fc
  --lora r=8,alpha=16,targets=c_attn         the fused query/key/value projections only
  --lora r=16,targets=q,k,v,c_proj,c_fc      one per query, key and value, as models with separate ones
  --prompt-tuning 20                         20 trained virtual tokens before every input
"""
# An adapter trains a few new parameters from scratch, with the base frozen: it takes learning
# rates ~10x those of full fine-tuning (Hu et al. 2021 fine-tune GPT-2 with LoRA at 2e-4 for
# 5 epochs; Lester et al. 2021 tune prompts at 0.3 with Adafactor). These apply unless --lr and
# --min-lr are given.
ADAPTER_LR = {"lora": (5e-4, 5e-5), "prompt": (3e-3, 3e-4)}


def add_shared_flags(parser, defaults: dict, unused_train_fields=()) -> None:
    """What every `gptlab finetune TASK` ends its flags with: --no-tensorboard, the adapters,
    and one flag per training setting, shown with the task's `defaults`."""
    import dataclasses

    from gptlab.commands.train import add_field_flag
    from gptlab.training.config import TrainConfig

    parser.add_argument(
        "--no-tensorboard", action="store_true", help="do not write TensorBoard events"
    )
    add_adapter_flags(parser)
    train = parser.add_argument_group("training")
    for field in dataclasses.fields(TrainConfig):
        if field.name not in unused_train_fields:
            add_field_flag(train, field, TrainConfig, defaults)


def add_adapter_flags(parser) -> None:
    """--lora and --prompt-tuning, for every `gptlab finetune TASK`."""
    from gptlab.adapters.config import PROMPT_INITS

    group = parser.add_argument_group("adapters (instead of training the model's own weights)")
    group.add_argument(
        "--lora",
        nargs="?",
        const="",
        default=argparse.SUPPRESS,
        metavar="SETTINGS",
        help="train LoRA adapters: r=16,alpha=16,dropout=0.05,targets=c_attn,c_proj,c_fc (any "
        "key may be left out; targets: module names, q/k/v, score, or globs)",
    )
    group.add_argument(
        "--prompt-tuning",
        type=int,
        default=argparse.SUPPRESS,
        metavar="N",
        help="train N virtual-token embeddings before every input (prompt tuning)",
    )
    group.add_argument(
        "--prompt-init",
        choices=PROMPT_INITS,
        default=argparse.SUPPRESS,
        help="start the prompt from random embeddings or from those of --prompt-init-text "
        "(default random)",
    )
    group.add_argument(
        "--prompt-init-text",
        default=argparse.SUPPRESS,
        metavar="TEXT",
        help="the text whose token embeddings start the prompt (implies --prompt-init text)",
    )


def adapter_settings(rest: dict):
    """The LoRAConfig or PromptTuningConfig the flags in `rest` ask for (removed from it), or
    None for none."""
    from gptlab.adapters.config import LoRAConfig, PromptTuningConfig

    lora = rest.pop("lora", None)
    prompt = {
        key: rest.pop(key)
        for key in ("prompt_tuning", "prompt_init", "prompt_init_text")
        if key in rest
    }
    if lora is not None and prompt:
        raise ConfigError("choose one adapter: --lora or --prompt-tuning, not both")
    if (lora is not None or prompt) and "policy" in rest:
        raise ConfigError(
            "--train chooses which of the model's weights train; with an adapter "
            "only the adapter (and a new head) trains: leave --train out"
        )
    if lora is not None:
        return LoRAConfig.parse(lora)
    if not prompt:
        return None
    if "prompt_tuning" not in prompt:
        raise ConfigError("--prompt-init and --prompt-init-text go with --prompt-tuning N")
    text = prompt.get("prompt_init_text")
    init = prompt.get("prompt_init", "text" if text else "random")
    return PromptTuningConfig(num_tokens=prompt["prompt_tuning"], init=init, init_text=text)


def adapter_defaults(defaults: dict, adapter) -> dict:
    """A task's training defaults with the learning rates of the adapter's kind."""
    if adapter is None:
        return defaults
    kind = adapter.to_dict()["type"]
    lr, min_lr = ADAPTER_LR[kind]
    return {**defaults, "lr": lr, "min_lr": min_lr}


def adapter_room(adapter) -> int:
    """Positions of the context an adapter takes (a prompt's virtual tokens)."""
    return getattr(adapter, "num_tokens", 0)
