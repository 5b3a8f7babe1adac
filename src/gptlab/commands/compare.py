"""`gptlab compare`: a report of language models side by side: perplexities on the corpora
their runs name, training curves, and what each writes after the same prompts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXAMPLES = """\
examples:
  gptlab compare runs/gpt2-mini runs/whitman --prompt "O Captain" --out report.html
  gptlab compare runs/gpt2-mini runs/whitman --prompts prompts.txt --out report.md
  gptlab compare runs/gpt2-mini runs/instruct --prompt "What is the capital of France?" \\
      --temperature 0 --out instruct.html           # greedy; the instruction run gets its prompt format
  gptlab compare runs/a runs/b --data english-mix --data notes.txt --prompts prompts.txt
"""

SUFFIXES = (".html", ".md")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="a report comparing language models: perplexities, curves, generations",
        description="Write a report (HTML, or Markdown when --out ends in .md) that compares "
        "language models side by side: each model's perplexity on the validation split of every "
        "corpus the runs were trained on (a fine-tuning run's and its base's: what it gained and "
        "what it forgot) and on an instruction run's test split, the training curves of the runs, "
        "and what each model writes after the same prompts with the same seed. Every model is "
        "measured over the first model's tokens; one with another tokenizer gets no numbers.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "models",
        metavar="MODEL",
        nargs="+",
        help="run directories, Hugging Face GPT-2 folders, or model names (gpt2, ...)",
    )
    parser.add_argument(
        "--prompts", metavar="FILE", help="a text file of prompts, one a line (blank lines skipped)"
    )
    parser.add_argument(
        "--prompt", action="append", default=[], metavar="TEXT", help="a prompt (repeatable)"
    )
    parser.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="NAME_OR_FILE",
        help="another corpus to measure every model on (repeatable): a text file or dataset name",
    )
    parser.add_argument(
        "--out", default="report.html", help="the report: .html or .md (default report.html)"
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=60, help="tokens to generate a prompt (default 60)"
    )
    parser.add_argument("--seed", type=int, default=1337, help="random seed (default 1337)")
    parser.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="divide logits by T: <1 sharper, >1 flatter, 0 greedy (default 1)",
    )
    parser.add_argument(
        "--top-k", type=int, default=None, help="sample only among the K most likely tokens"
    )
    parser.add_argument(
        "--checkpoint",
        choices=["best", "last"],
        default="best",
        help="which weights of a run (default best)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=8, help="windows per forward pass (default 8)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    parser.set_defaults(run=run, command="compare")


def run(args: argparse.Namespace) -> int:
    from gptlab import comparison
    from gptlab.atomic import atomic_write
    from gptlab.device import resolve_device
    from gptlab.errors import ConfigError
    from gptlab.generation import GenerationConfig

    out = Path(args.out)
    if out.suffix.lower() not in SUFFIXES:
        raise ConfigError(f"--out must end in .html or .md, not {out.name}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be positive, got {args.batch_size}")
    prompts = read_prompts(args.prompts, args.prompt)
    decoding = GenerationConfig(  # checks every decoding flag before the models load
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        seed=args.seed,
        overflow="slide",
    )
    device = resolve_device(args.device)
    models = comparison.load_entrants(args.models, device, args.checkpoint)
    benchmarks, notes = comparison.find_benchmarks(models, args.data)
    if not benchmarks:
        notes.append("no corpus to measure on: the models name none, and no --data was given")
    results, tokenizer_notes = comparison.evaluate(models, benchmarks, device, args.batch_size)
    report = comparison.Comparison(
        models=models,
        benchmarks=benchmarks,
        results=results,
        prompts=prompts,
        generations=comparison.generate_all(models, prompts, decoding),
        decoding=comparison.describe_decoding(decoding),
        curves_png=comparison.curves_png(models),
        notes=notes + tokenizer_notes,
    )
    if out.suffix.lower() == ".md":
        curves = out.with_name(f"{out.stem}-curves.png")
        if report.curves_png is not None:
            with atomic_write(curves) as file:
                file.write(report.curves_png)
        text = comparison.to_markdown(report, curves.name if report.curves_png else None)
    else:
        text = comparison.to_html(report)
    with atomic_write(out) as file:
        file.write(text.encode("utf-8"))
    print(f"wrote {out}", file=sys.stderr)
    return 0


def read_prompts(path: str | None, prompts: list[str]) -> list[str]:
    """The lines of the prompts file that are not blank, then the --prompt texts."""
    from gptlab.errors import ConfigError

    found = []
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"cannot read the prompts file {path}: {error}") from None
        found = [line for line in text.splitlines() if line.strip()]
        if not found:
            raise ConfigError(f"{path} has no prompts: write one a line")
    found += prompts
    if not found:
        raise ConfigError("give the prompts to generate from: --prompts FILE or --prompt TEXT")
    return found
