"""`gptlab merge`: fold a LoRA run's adapter into its base and write a plain model."""

from __future__ import annotations

import argparse
from pathlib import Path

from gptlab.errors import ConfigError

EXAMPLES = """\
examples:
  gptlab merge runs/spam-lora --out runs/spam-merged
  gptlab classify runs/spam-merged "You won a prize! Call now"   # as fast as the base model
  gptlab export runs/spam-merged --out exported/spam             # a plain transformers model
"""
# The sections of a LoRA run's config that describe the adapter or its training, which a plain
# model (that cannot be resumed) does not have.
ADAPTER_SECTIONS = ("adapter", "finetune")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "merge",
        help="fold a LoRA run's adapter into its base: a plain model",
        description="Add a LoRA run's low-rank updates to its base's weights (W + alpha/r * B A) and "
        "write the result as a plain run directory: no adapter, no reference to the base, the "
        "same outputs, and inference exactly as fast as the base model's. The LoRA run is left "
        "as it is.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN", help="a run directory made with --lora")
    parser.add_argument("--out", required=True, help="run directory to create")
    parser.set_defaults(run=run, command="merge")


def run(args: argparse.Namespace) -> int:
    import torch

    from gptlab.adapters import adapter_kind, merged_model
    from gptlab.runs import load_run, write_run_config
    from gptlab.training.checkpoint import MODEL_FILE, STATE_FILE, TOKENIZER_DIR, save_weights

    out = Path(args.out)
    if (out / MODEL_FILE).exists() or (out / STATE_FILE).exists():
        raise ConfigError(f"{out} already holds a model; choose another --out")
    if out.resolve() == Path(args.run_dir).resolve():
        raise ConfigError("--out must be a new directory, not the LoRA run itself")
    model, tokenizer, config = load_run(args.run_dir)
    kind = adapter_kind(model)
    if kind is None:
        raise ConfigError(f"{args.run_dir} has no adapter to merge: it is a plain model already")
    if kind == "prompt":
        raise ConfigError(
            f"{args.run_dir} is a prompt-tuning run: its virtual tokens are an input, not a "
            "change of weights, so there is nothing to merge; use the run as it is, or export "
            "it to peft (gptlab export)"
        )
    probe = torch.arange(min(16, model.config.context_length))[None] % model.config.vocab_size
    with torch.no_grad():
        before, _ = model(probe)
        model = merged_model(model)
        after, _ = model(probe)
    out.mkdir(parents=True, exist_ok=True)
    save_weights(model, out / MODEL_FILE, {"merged_from": str(args.run_dir)})
    tokenizer.save(out / TOKENIZER_DIR)
    sections = {
        key: value
        for key, value in config.items()
        if key not in (*ADAPTER_SECTIONS, "gptlab_version", "model", "train", "data")
    }
    write_run_config(
        out,
        model.config,
        config["train"],
        config["data"],
        **sections,
        merged_from={"run": str(args.run_dir), "adapter": config["adapter"]},
    )
    difference = (before - after).abs().max().item()
    print(
        f"wrote {out}: {args.run_dir}'s LoRA merged into its base ({model.num_params():,} "
        f"parameters); largest logit change from merging {difference:.2e}"
    )
    return 0
