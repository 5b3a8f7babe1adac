"""`gptlab quantize`: store a model's weights in 8 or 4 bits, as a run directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from gptlab.errors import ConfigError

EXAMPLES = """\
examples:
  gptlab quantize runs/shakespeare --method int8-dynamic --out runs/shakespeare-int8
  gptlab sample runs/shakespeare-int8 --prompt "ROMEO:"       # reads it like any run
  gptlab eval runs/shakespeare-int8                           # the perplexity it costs
  gptlab info runs/shakespeare-int8                           # the method and the size on disk
  gptlab quantize gpt2 --method int4-weight --group-size 64 --out runs/gpt2-int4
  gptlab quantize runs/spam-merged --method int8-weight --out runs/spam-int8   # a classifier
"""
# Sections of a source run's config that a quantized model does not keep: it cannot resume
# training, and its `quantization` section is written anew.
DROPPED_SECTIONS = ("gptlab_version", "model", "train", "data", "finetune", "quantization")


def add_parser(subparsers) -> None:
    from gptlab.quantization.config import DEFAULT_GROUP_SIZE, METHODS

    methods = "".join(
        f"  {name:<13} {spec.summary}" + (" (not implemented yet)" if spec.missing else "") + "\n"
        for name, spec in METHODS.items()
    )
    parser = subparsers.add_parser(
        "quantize",
        help="store a model's weights in 8 or 4 bits",
        description="Quantize a model (a run directory, Hugging Face folder or model name; a "
        "language model or a classifier) and write it as a run directory whose weights are "
        "stored as integers with their scales, loaded as they are.",
        epilog="methods:\n" + methods + "\n" + EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model", metavar="MODEL", help="a run directory, Hugging Face folder or model name"
    )
    parser.add_argument("--method", required=True, help=f"one of {', '.join(METHODS)}")
    parser.add_argument(
        "--group-size",
        type=int,
        help=f"int4-weight: input features sharing a scale and zero point; must divide every "
        f"layer's input width (default {DEFAULT_GROUP_SIZE})",
    )
    parser.add_argument("--out", required=True, help="run directory to create")
    parser.add_argument(
        "--device",
        default="auto",
        help="where to quantize and check the method runs: auto, cpu, cuda, mps",
    )
    parser.set_defaults(run=run, command="quantize")


def run(args: argparse.Namespace) -> int:
    import torch

    from gptlab import __version__
    from gptlab.device import resolve_device
    from gptlab.pretrained import load_model
    from gptlab.quantization import QuantConfig, check_method, quantize_model
    from gptlab.runs import task_sections, write_run_config
    from gptlab.training.checkpoint import MODEL_FILE, STATE_FILE, TOKENIZER_DIR, save_weights

    out = Path(args.out)
    if (out / MODEL_FILE).exists() or (out / STATE_FILE).exists():
        raise ConfigError(f"{out} already holds a model; choose another --out")
    if args.group_size is not None and args.method != "int4-weight":
        raise ConfigError(f"--group-size is for int4-weight; {args.method} has one scale a row")
    config = QuantConfig(
        args.method, **({} if args.group_size is None else {"group_size": args.group_size})
    )
    device = resolve_device(args.device)
    check_method(config, device)  # before loading anything: a refusal costs nothing
    source = _run_config(args.model)
    if "adapter" in source:
        raise ConfigError(
            f"{args.model} is an adapter run: merge its adapter into the base first "
            f"(gptlab merge {args.model} --out MERGED), then quantize the merged run"
        )
    if "quantization" in source:
        method = source["quantization"]["method"]
        raise ConfigError(f"{args.model} is quantized already ({method}): quantize its source")
    model, tokenizer, info = load_model(args.model, device)
    probe = (
        torch.arange(min(16, model.config.context_length), device=device)[None]
        % model.config.vocab_size
    )
    with torch.no_grad():
        before, _ = model(probe)
        quantize_model(model, config)
        after, _ = model(probe)
    out.mkdir(parents=True, exist_ok=True)
    save_weights(model, out / MODEL_FILE, {"quantization": config.method, "source": info["source"]})
    tokenizer.save(out / TOKENIZER_DIR)
    kept = {key: value for key, value in source.items() if key not in DROPPED_SECTIONS}
    sections = kept or task_sections(model)  # not a run: the task its shape says
    write_run_config(
        out,
        model.config,
        source.get("train", {}),
        source.get("data", {"imported_from": info["source"]}),
        **sections,
        quantization={**config.to_dict(), "source": info["source"], "gptlab_version": __version__},
    )
    size = (out / MODEL_FILE).stat().st_size
    difference = (before.float() - after.float()).abs().max().item()
    print(
        f"wrote {out}: {info['source']} quantized with {config.describe()}; weights "
        f"{size / 2**20:,.1f} MiB; largest logit change on a probe {difference:.2e}"
    )
    return 0


def _run_config(spec: str) -> dict:
    """The config of a gptlab run directory; {} for a Hugging Face folder or a model name."""
    from gptlab.pretrained import is_hf_folder
    from gptlab.runs import read_run_config
    from gptlab.training.checkpoint import CONFIG_FILE

    path = Path(spec).expanduser()
    if (path / CONFIG_FILE).is_file() and not is_hf_folder(path):
        return read_run_config(path)
    return {}
