"""`gptlab classify`: the class and class probabilities a classifier gives texts."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXAMPLES = """\
examples:
  gptlab classify runs/spam "You won a prize! Call now to claim" "See you at lunch?"
  gptlab classify runs/spam --file messages.csv --out predictions.csv
  gptlab classify runs/spam --file messages.jsonl --text-column body --out predictions.jsonl
  gptlab classify runs/spam "Free entry!" --json
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "classify",
        help="classify texts with a fine-tuned classifier",
        description="Print the predicted class and the class probabilities of each text, or write "
        "them beside each row of a CSV, TSV or JSONL file. Texts longer than the classifier was "
        "trained on are cut to that length, as in training.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="a classification run directory (from gptlab finetune classify) or a Hugging Face "
        "GPT2ForSequenceClassification folder",
    )
    parser.add_argument("texts", metavar="TEXT", nargs="*", help="texts to classify")
    parser.add_argument("--file", help="a .csv, .tsv or .jsonl file of texts to classify")
    parser.add_argument(
        "--text-column",
        help="the column of --file that holds the text (default: the run's, or text)",
    )
    parser.add_argument(
        "--out",
        help="write --file's rows with the predicted label and one probability column a class "
        "(.csv, .tsv or .jsonl; default: print them)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=32, help="texts per forward pass (default 32)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    parser.add_argument("--json", action="store_true", help="print one JSON object a text")
    parser.set_defaults(run=run, command="classify")


def run(args: argparse.Namespace) -> int:
    from gptlab.errors import ConfigError

    if bool(args.texts) == bool(args.file):
        raise ConfigError("give texts to classify, or --file FILE (not both)")
    if args.out and not args.file:
        raise ConfigError("--out writes the rows of --file: give --file too")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be positive, got {args.batch_size}")
    if args.out and args.file and Path(args.out).resolve() == Path(args.file).resolve():
        raise ConfigError("--out must not be --file: the input would be overwritten")
    from gptlab.data.labelled import read_rows
    from gptlab.device import resolve_device
    from gptlab.pretrained import load_model
    from gptlab.tasks.classification import max_text_tokens, predict_texts

    device = resolve_device(args.device)
    model, tokenizer, info = load_model(args.model, device, task="classify")
    data = info.get("config", {}).get("data", {})  # how a run was trained, when it is a run
    max_length = max_text_tokens(model, info)
    rows = None
    if args.file:
        rows = read_rows(Path(args.file))
        column = args.text_column or data.get("text_column", "text")
        if not rows or column not in rows[0]:
            known = ", ".join(rows[0]) if rows else "none"
            raise ConfigError(
                f"{args.file} has no column {column!r} (its columns: {known}): name it with --text-column"
            )
        texts = [str(row.get(column) or "") for row in rows]
    else:
        texts = args.texts
    probabilities, truncated = predict_texts(
        model, tokenizer, texts, max_length, args.batch_size, device
    )
    names = model.head.labels
    if truncated:
        print(
            f"note: {truncated} text(s) longer than {max_length} tokens were cut to it, as in training",
            file=sys.stderr,
        )
    results = [
        {
            "label": names[int(p.argmax())],
            "probabilities": {name: round(float(q), 6) for name, q in zip(names, p, strict=True)},
        }
        for p in probabilities
    ]
    if args.out:
        from gptlab.data.labelled import write_rows

        out_rows = [
            {
                **row,
                "predicted": result["label"],
                **{f"p_{name}": q for name, q in result["probabilities"].items()},
            }
            for row, result in zip(rows, results, strict=True)
        ]
        write_rows(Path(args.out), out_rows)
        counts = {name: sum(r["label"] == name for r in results) for name in names}
        summary = ", ".join(f"{name} {count:,}" for name, count in counts.items())
        print(f"wrote {len(results):,} predictions to {args.out} ({summary})")
        return 0
    for text, result in zip(texts, results, strict=True):
        if args.json:
            print(json.dumps({"text": text, **result}, ensure_ascii=False))
        else:
            shown = ", ".join(f"{name} {q:.4f}" for name, q in result["probabilities"].items())
            print(f"{result['label']:<12} ({shown})  {_preview(text)}")
    return 0


def _preview(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."
