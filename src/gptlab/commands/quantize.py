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
  gptlab quantize runs/gpt2-mini --method int8-static --out runs/gpt2-mini-static
                  # calibrated on 8 batches of the run's own training split
  gptlab quantize gpt2 --method int8-static --calibration-data tinyshakespeare \\
                  --calibration-batches 16 --observer percentile --out runs/gpt2-static
  gptlab quantize runs/gpt2-mini --method fp8 --fp8-scaling tensor --out runs/gpt2-mini-fp8
                  # needs a CUDA GPU of compute capability 8.9 or more (H100, H200)
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
    parser.add_argument(
        "--calibration-data",
        metavar="DATA",
        help="int8-static: text to fix the activation scales on, a file or a dataset/corpus "
        "name (default: the training split of the model's own data, for a gptlab run)",
    )
    parser.add_argument(
        "--calibration-batches",
        type=int,
        metavar="N",
        help="int8-static: batches of 4 windows of up to 256 tokens to calibrate on (default 8)",
    )
    parser.add_argument(
        "--observer",
        choices=("max", "percentile"),
        help="int8-static: each activation scale from the max of |x| seen (default) or a "
        "percentile of it (clips the rarest values)",
    )
    parser.add_argument(
        "--percentile", type=float, help="int8-static with --observer percentile (default 99.99)"
    )
    parser.add_argument(
        "--fp8-scaling",
        choices=("row", "tensor"),
        help="fp8: a scale per output channel and per token (row, default) or one per tensor",
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
    config = QuantConfig(args.method, **_method_settings(args))
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
    calibration, record = None, {}
    if config.method == "int8-static":
        calibration, record = _calibration(args, source, model, tokenizer, device)
    probe = (
        torch.arange(min(16, model.config.context_length), device=device)[None]
        % model.config.vocab_size
    )
    with torch.no_grad():
        before, _ = model(probe)
        quantize_model(model, config, calibration)
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
        quantization={
            **config.to_dict(),
            **record,
            "source": info["source"],
            "gptlab_version": __version__,
        },
    )
    size = (out / MODEL_FILE).stat().st_size
    difference = (before.float() - after.float()).abs().max().item()
    print(
        f"wrote {out}: {info['source']} quantized with {config.describe()}; weights "
        f"{size / 2**20:,.1f} MiB; largest logit change on a probe {difference:.2e}"
    )
    return 0


# flag -> (the method it is for, the QuantConfig field it sets)
METHOD_FLAGS = {
    "group_size": ("int4-weight", "group_size"),
    "observer": ("int8-static", "observer"),
    "percentile": ("int8-static", "percentile"),
    "calibration_data": ("int8-static", None),
    "calibration_batches": ("int8-static", None),
    "fp8_scaling": ("fp8", "fp8_scaling"),
}


def _method_settings(args) -> dict:
    """The QuantConfig fields the flags set; a flag of another method is refused."""
    settings = {}
    for flag, (method, field) in METHOD_FLAGS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        if args.method != method:
            raise ConfigError(f"--{flag.replace('_', '-')} is for {method}, not {args.method}")
        if field:
            settings[field] = value
    if args.percentile is not None and args.observer != "percentile":
        raise ConfigError("--percentile is for --observer percentile")
    if args.calibration_batches is not None and args.calibration_batches < 1:
        raise ConfigError(
            f"--calibration-batches must be 1 or more, got {args.calibration_batches}"
        )
    return settings


def _calibration(args, source: dict, model, tokenizer, device) -> tuple[list, dict]:
    """(batches of token ids, what the run records of them) for int8-static: windows spread
    over --calibration-data, or over the training split of the model's own data."""
    from gptlab.data.text import TokenData, resolve_text, tokenize_corpus
    from gptlab.quantization.calibration import DEFAULT_BATCHES, calibration_batches

    if args.calibration_data:
        spec = args.calibration_data
        tokens = tokenize_corpus(resolve_text(spec), tokenizer)
    elif "data" in source.get("data", {}):
        data = source["data"]
        spec = f"{data['data']} (training split)"
        text = resolve_text(data["data"])
        tokens = TokenData.from_file(text, tokenizer, data.get("val_fraction", 0.1)).train
    else:
        raise ConfigError(
            f"int8-static calibrates on text and {args.model} names no training data: pass "
            "--calibration-data FILE_OR_DATASET"
        )
    count = args.calibration_batches or DEFAULT_BATCHES
    batches = calibration_batches(tokens, model.config.context_length, count, device)
    record = {"data": spec, "batches": count, "tokens": sum(b.numel() for b in batches)}
    print(f"calibrating on {record['tokens']:,} tokens of {spec}", flush=True)
    return batches, {"calibration": record}


def _run_config(spec: str) -> dict:
    """The config of a gptlab run directory; {} for a Hugging Face folder or a model name."""
    from gptlab.pretrained import is_hf_folder
    from gptlab.runs import read_run_config
    from gptlab.training.checkpoint import CONFIG_FILE

    path = Path(spec).expanduser()
    if (path / CONFIG_FILE).is_file() and not is_hf_folder(path):
        return read_run_config(path)
    return {}
