"""`gptlab export`, `gptlab import` and `gptlab info`: move models between gptlab and the
Hugging Face GPT-2 format, and describe one."""

from __future__ import annotations

import argparse
from pathlib import Path

EXPORT_EXAMPLES = """\
examples:
  gptlab export runs/shakespeare --out exported/shakespeare
  python -c "from transformers import GPT2LMHeadModel; GPT2LMHeadModel.from_pretrained('exported/shakespeare')"

  gptlab export runs/spam-lora --out exported/spam-lora            # base + peft adapter
  python -c "from peft import PeftModel; from transformers import GPT2ForSequenceClassification as M;
             PeftModel.from_pretrained(M.from_pretrained('exported/spam-lora'), 'exported/spam-lora/adapter')"
  gptlab export runs/spam-lora --merged --out exported/spam-merged # one plain model

  gptlab export runs/shakespeare --format onnx --out exported/onnx            # model.onnx
  gptlab export runs/shakespeare --format torch-export --out exported/program # model.pt2
  gptlab export runs/mlm --out exported/mlm                         # an encoder, as BERT
  gptlab export runs/spam-encoder --out exported/spam-bert  # BertForSequenceClassification
"""
IMPORT_EXAMPLES = """\
examples:
  gptlab import gpt2 --out runs/gpt2                 # from the Hugging Face hub
  gptlab import path/to/hf_gpt2_folder --out runs/mine
  gptlab import exported/mlm --out runs/mlm-again    # a BertForMaskedLM folder with gptlab's tokenizer
  gptlab import path/to/peft_adapter --base gpt2 --out runs/adapted   # a peft LoRA or prompt
"""
INFO_EXAMPLES = """\
examples:
  gptlab info runs/shakespeare
  gptlab info gpt2-medium
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a run as a Hugging Face GPT-2 (or, for an encoder, BERT) folder",
        description="Write a folder that transformers' GPT2LMHeadModel.from_pretrained (and, for the "
        "GPT-2 tokenizer, GPT2TokenizerFast.from_pretrained) load, with the same logits; for a "
        "masked-language-model run (train --objective mlm), one that BertForMaskedLM loads; for a "
        "classifier fine-tuned on one (first-token pooling with BERT's pooler), one that "
        "BertForSequenceClassification loads.",
        epilog=EXPORT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model", metavar="RUN_DIR", help="a run directory, Hugging Face folder or model name"
    )
    parser.add_argument("--out", required=True, help="folder to write")
    parser.add_argument(
        "--merged",
        action="store_true",
        help="for a LoRA run: write one plain model with the adapter merged into its weights, "
        "instead of the base and a peft adapter",
    )
    parser.add_argument(
        "--format",
        choices=["hf", "onnx", "torch-export"],
        default="hf",
        help="hf: a Hugging Face GPT-2 folder (default); onnx: an ONNX graph with its KV cache as "
        "inputs and outputs, checked with ONNX Runtime; torch-export: a torch.export program "
        "that runs without gptlab (both checked against gptlab: logits and greedy tokens)",
    )
    parser.set_defaults(run=run_export, command="export")

    parser = subparsers.add_parser(
        "import",
        help="make a run directory from a Hugging Face GPT-2 checkpoint",
        description="Make a gptlab run directory from a GPT-2 checkpoint: a model name on the Hugging "
        "Face hub (gpt2, gpt2-medium, gpt2-large, gpt2-xl) or a local Hugging Face folder; or, from "
        "a peft adapter folder (LoRA or prompt tuning), an adapter run on its base.",
        epilog=IMPORT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model",
        metavar="NAME_OR_DIR",
        help="a model name, a Hugging Face folder, or a peft adapter folder",
    )
    parser.add_argument("--out", required=True, help="run directory to create")
    parser.add_argument(
        "--base",
        help="for a peft adapter: its base model (a name, Hugging Face folder or run directory; "
        "default: the adapter config's base_model_name_or_path)",
    )
    parser.set_defaults(run=run_import, command="import")

    parser = subparsers.add_parser(
        "info",
        help="describe a model: shape, parameters, size",
        description="Print a model's configuration (layers, heads, width, context, vocabulary), its "
        "parameter count and its size on disk.",
        epilog=INFO_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model", metavar="MODEL", help="a run directory, Hugging Face folder or model name"
    )
    parser.set_defaults(run=run_info, command="info")


def run_export(args: argparse.Namespace) -> int:
    from gptlab.adapters import adapter_kind, merged_model
    from gptlab.errors import ConfigError
    from gptlab.models.classifier import EncoderClassifier
    from gptlab.pretrained import export_hf, load_model

    model, tokenizer, info = load_model(args.model, task="any")
    if info["task"] == "mlm" or isinstance(model, EncoderClassifier):
        if args.format != "hf":
            raise ConfigError(
                f"--format {args.format} exports GPTs; an encoder exports as hf (BERT)"
            )
        return _export_bert(model, tokenizer, info, args)
    quantization = info.get("config", {}).get("quantization")
    if args.format != "hf":
        return _export_portable(args, model, tokenizer, info)
    if quantization:
        raise ConfigError(
            f"{args.model} is quantized ({quantization['method']}) and GPT2LMHeadModel holds "
            f"float weights: export its source, {quantization.get('source', 'the float model')}"
        )
    kind = adapter_kind(model)
    if args.merged and kind != "lora":
        raise ConfigError(
            f"--merged folds a LoRA adapter into the weights; {args.model} has "
            + ("a soft prompt, which cannot be merged" if kind else "no adapter")
        )
    if kind is not None and not args.merged:
        return _export_adapter(model, tokenizer, info, args.out)
    out = export_hf(merged_model(model) if args.merged else model, tokenizer, args.out)
    note = (
        ""
        if tokenizer.kind == "gpt2"
        else f" (its {tokenizer.kind} tokenizer is gptlab's own: load it with gptlab)"
    )
    architecture = (
        "GPT2ForSequenceClassification" if info["task"] == "classify" else "GPT2LMHeadModel"
    )
    print(f"wrote {out}: {architecture}.from_pretrained({str(out)!r}) loads it{note}")
    return 0


# The check after a portable export: greedy tokens from this prompt, logits this close.
CHECK_TOKENS = 16
CHECK_TOLERANCE = 1e-4


def _export_portable(args, model, tokenizer, info: dict) -> int:
    """ONNX or torch.export: the cached step written, then decoded and compared with gptlab."""
    from gptlab.adapters import adapter_kind, merged_model
    from gptlab.errors import ConfigError
    from gptlab.export.step import check_against_gptlab

    if info["task"] != "lm" or info.get("config", {}).get("quantization"):
        raise ConfigError(
            f"--format {args.format} exports float language models; {args.model} is "
            + ("a classifier" if info["task"] != "lm" else "quantized (export its source)")
        )
    kind = adapter_kind(model)
    if kind == "prompt":
        raise ConfigError(
            f"{args.model} is prompt-tuned: its virtual tokens are not part of the exported step"
        )
    if kind == "lora":
        model = merged_model(model)  # one plain graph, as fast as the base
    model = model.cpu().float().eval()
    out = Path(args.out)
    if args.format == "onnx":
        from gptlab.export.onnx import export_onnx, onnx_session, session_step

        path = export_onnx(model, out / "model.onnx")
        step, runtime = session_step(onnx_session(path)), "ONNX Runtime"
    else:
        from gptlab.export.program import export_program, load_program

        path = export_program(model, out / "model.pt2")
        step, runtime = load_program(path), "the torch.export program"
    tokenizer.save(out / "tokenizer")
    prompt = [tokenizer.eos_id if tokenizer.eos_id is not None else 0]
    check = check_against_gptlab(model, step, prompt, CHECK_TOKENS)
    agrees = check["tokens_equal"] and check["max_abs_diff"] <= CHECK_TOLERANCE
    print(
        f"wrote {path}; {runtime}: {CHECK_TOKENS} greedy tokens "
        f"{'equal' if check['tokens_equal'] else 'DIFFERENT from'} gptlab's, logits within "
        f"{check['max_abs_diff']:.1e} of gptlab's"
    )
    return 0 if agrees else 1


def _export_bert(model, tokenizer, info: dict, args) -> int:
    from gptlab.errors import ConfigError
    from gptlab.pretrained_bert import export_bert

    if args.merged:
        raise ConfigError(f"--merged folds a LoRA adapter into the weights; {args.model} has none")
    if "quantization" in info.get("config", {}):
        raise ConfigError(f"{args.model} is quantized; BERT holds float weights: export its source")
    out = export_bert(model, tokenizer, args.out)
    architecture = (
        "BertForSequenceClassification" if info["task"] == "classify" else "BertForMaskedLM"
    )
    note = (
        "BertTokenizerFast loads its WordPiece tokenizer"
        if tokenizer.kind == "wordpiece"
        else f"its {tokenizer.kind} tokenizer with [MASK] is gptlab's own: load it with gptlab"
    )
    print(f"wrote {out}: {architecture}.from_pretrained({str(out)!r}) loads it ({note})")
    return 0


def _export_adapter(model, tokenizer, info: dict, out: str) -> int:
    from gptlab.adapters.peft_format import ADAPTER_DIR, export_peft

    out = export_peft(model, tokenizer, info["config"], out)
    architecture = (
        "GPT2ForSequenceClassification" if info["task"] == "classify" else "GPT2LMHeadModel"
    )
    print(
        f"wrote {out} (the base) and {out / ADAPTER_DIR} (the adapter, in peft's format); load "
        f"them with PeftModel.from_pretrained({architecture}.from_pretrained({str(out)!r}), "
        f"{str(out / ADAPTER_DIR)!r})"
    )
    return 0


def run_import(args: argparse.Namespace) -> int:
    from gptlab.adapters.peft_format import CONFIG_FILE as PEFT_CONFIG
    from gptlab.errors import ConfigError
    from gptlab.pretrained import load_model
    from gptlab.runs import task_sections, write_run_config
    from gptlab.training.checkpoint import MODEL_FILE, STATE_FILE, TOKENIZER_DIR, save_weights

    out = Path(args.out)
    if (out / MODEL_FILE).exists() or (out / STATE_FILE).exists():
        raise ConfigError(f"{out} already holds a model; choose another --out")
    if args.base is not None or (Path(args.model) / PEFT_CONFIG).is_file():
        return _import_adapter(args.model, args.base, out)
    model, tokenizer, info = load_model(args.model, task="any")
    out.mkdir(parents=True, exist_ok=True)
    save_weights(model, out / MODEL_FILE, {"source": info["source"]})
    tokenizer.save(out / TOKENIZER_DIR)
    write_run_config(
        out, model.config, train={}, data={"imported_from": info["source"]}, **task_sections(model)
    )
    print(f"wrote run directory {out} ({model.num_params():,} parameters) from {info['source']}")
    return 0


def _import_adapter(folder: str, base: str | None, out: Path) -> int:
    from gptlab.adapters import freeze_base
    from gptlab.adapters.adapted import base_config
    from gptlab.adapters.peft_format import load_peft
    from gptlab.runs import write_run_config
    from gptlab.training.checkpoint import MODEL_FILE, TOKENIZER_DIR, save_weights

    model, tokenizer, sections = load_peft(folder, base)
    trainable, total = freeze_base(model)
    out.mkdir(parents=True, exist_ok=True)
    save_weights(model, out / MODEL_FILE, {"source": str(folder)})
    tokenizer.save(out / TOKENIZER_DIR)
    write_run_config(
        out, base_config(model), train={}, data={"imported_from": str(folder)}, **sections
    )
    print(
        f"wrote adapter run directory {out} ({trainable:,} adapter parameters of {total:,}) "
        f"from {folder} on {sections['base']['source']}"
    )
    return 0


def _adapter_rows(model, config: dict) -> list[tuple[str, str]]:
    """What `info` adds for an adapter run: the adapter, its size, and the base it needs."""
    if "adapter" not in config:
        return []
    from gptlab.adapters import adapter_config, adapter_state

    base = config["base"]
    saved = sum(t.numel() for t in adapter_state(model).values())
    return [
        ("adapter", adapter_config(config["adapter"]).describe()),
        ("saved", f"{saved:,} parameters (the adapter and any new head; the base is not copied)"),
        ("base", f"{base['source']} ({base['kind']}), sha256 {base.get('sha256', '?')[:16]}..."),
    ]


def _quantization_rows(config: dict) -> list[tuple[str, str]]:
    """What `info` adds for a quantized run: the method and what it was made from."""
    if "quantization" not in config:
        return []
    from gptlab.quantization import QuantConfig

    section = config["quantization"]
    rows = [
        ("quantization", QuantConfig.from_dict(section).describe()),
        ("quantized from", section.get("source", "?")),
    ]
    if "calibration" in section:  # int8-static: what its activation scales were fixed on
        record = section["calibration"]
        rows.append(("calibrated on", f"{record['tokens']:,} tokens of {record['data']}"))
    return rows


def run_info(args: argparse.Namespace) -> int:
    from gptlab.pretrained import load_model
    from gptlab.quantization import stored_numbers
    from gptlab.tasks.seq2seq import is_seq2seq_run

    if is_seq2seq_run(args.model):
        return _seq2seq_info(args.model)
    model, tokenizer, info = load_model(args.model, task="any")
    c = model.config
    count = stored_numbers(model)  # a quantized model's weights are buffers, not parameters
    folder = Path(info.get("folder", info["source"]))
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0
    rows = [
        ("source", f"{info['source']} ({info['kind']})"),
        ("layers", c.n_layer),
        ("heads", f"{c.n_head} (head size {c.head_size})"),
        ("width", c.n_embd),
        ("context", c.context_length),
        ("vocabulary", f"{c.vocab_size:,} ({tokenizer.kind} tokenizer)"),
        ("positions", getattr(c, "positions", "learned")),
        *([("task", "mlm: a bidirectional encoder (BERT-style)")] if info["task"] == "mlm" else []),
        *(
            [
                (
                    "task",
                    f"classify: {', '.join(model.head.labels)} ({model.head.pooling} pooling"
                    + (", BERT's pooler)" if model.head.pooler else ")"),
                )
            ]
            if info["task"] == "classify"
            else []
        ),
        ("dropout", c.dropout),
        (
            "parameters",
            f"{count:,} ({count / 1e6:.1f}M; tied embedding counted once)",
        ),
        ("size on disk", f"{size / 2**20:,.1f} MiB" if size else "n/a"),
        *_adapter_rows(model, info.get("config", {})),
        *_quantization_rows(info.get("config", {})),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


def _seq2seq_info(run_dir: str) -> int:
    """The shape of an encoder-decoder run and what it was trained on."""
    from gptlab.tasks.seq2seq import load_seq2seq_run

    model, src_tokenizer, tgt_tokenizer, config = load_seq2seq_run(run_dir)
    c, data = model.config, config["data"]
    vocabulary = (
        f"{c.src_vocab_size:,} joint ({src_tokenizer.kind} tokenizer)"
        if src_tokenizer is tgt_tokenizer
        else f"{c.src_vocab_size:,} source, {c.tgt_vocab_size:,} target ({src_tokenizer.kind})"
    )
    folder = Path(run_dir)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    rows = [
        ("source", f"{run_dir} (run)"),
        ("task", f"seq2seq: {data.get('task', '?')}"),
        ("architecture", "encoder-decoder Transformer (Vaswani et al. 2017)"),
        ("layers", f"{c.n_encoder_layer} encoder, {c.n_decoder_layer} decoder"),
        ("heads", f"{c.n_head} (head size {c.head_size})"),
        ("width", f"{c.n_embd} (feed-forward {c.ff_hidden or 4 * c.n_embd})"),
        ("norms", "pre-LN" if c.pre_norm else "post-LN"),
        ("max length", f"{c.max_length} source / target tokens"),
        ("vocabulary", vocabulary),
        ("embeddings", "shared source/target" if c.shared_embeddings else "separate"),
        ("output", "tied to the target embeddings" if c.tie_output else "its own projection"),
        ("positions", c.positions),
        ("dropout", c.dropout),
        ("parameters", f"{model.num_params():,} ({model.num_params() / 1e6:.2f}M; shared once)"),
        ("size on disk", f"{size / 2**20:,.1f} MiB"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0
