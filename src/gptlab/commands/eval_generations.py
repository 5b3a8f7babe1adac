"""`gptlab eval --generations FILE`: score generated text against references, whatever made it.

Text made by any model (a gptlab run, a Hugging Face pipeline, another toolkit, a person) is
scored with `gptlab.evaluation.text_metrics`: sacreBLEU, the tutorials' lower-cased tokenized
BLEU, chrF and ROUGE-1/2/L. Where the references come from:

- `--references FILE`: a text file, one reference a line, line i for generation i;
- a .jsonl generations file whose objects carry both a `generation` and a `reference` (what
  `gptlab eval RUN --generate --save-generations FILE.jsonl` writes): scored as it stands;
- `gptlab eval RUN --generations FILE`: the references of the run's split (`--split`, default
  test): an instruction run's outputs (or those of every entry of `--data`), a seq2seq run's
  targets, in order.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gptlab.errors import ConfigError, DataError

GENERATION_FIELD, REFERENCE_FIELD = "generation", "reference"


def read_generations(path: str | Path) -> tuple[list[str], list[str] | None]:
    """(generations, references or None) of a .jsonl file of objects with a "generation" (and
    perhaps a "reference") field, or of a text file, one generation a line."""
    from gptlab.data.parallel import read_lines

    path = Path(path).expanduser()
    if path.suffix.lower() != ".jsonl":
        return [line.strip() for line in read_lines(path)], None
    from gptlab.data.labelled import read_rows

    rows = read_rows(path)
    if not rows:
        raise DataError(f"{path} has no generations")
    missing = next((n for n, row in enumerate(rows, 1) if GENERATION_FIELD not in row), None)
    if missing is not None:
        raise DataError(f'{path}, line {missing}: no "{GENERATION_FIELD}" field')
    generations = [str(row[GENERATION_FIELD]).strip() for row in rows]
    if not all(REFERENCE_FIELD in row for row in rows):
        return generations, None
    return generations, [str(row[REFERENCE_FIELD]).strip() for row in rows]


def run_references(args: argparse.Namespace) -> tuple[list[str], str, str | None]:
    """The references of a run's split: an instruction run's outputs (or those of every entry of
    --data), a seq2seq run's targets; a name for them; and their language when the run knows it."""
    from gptlab.data.instructions import load_instructions, split_instructions
    from gptlab.runs import read_run_config, run_task
    from gptlab.tasks.instruction import InstructionSpec
    from gptlab.tasks.seq2seq import eval_pairs, is_seq2seq_config

    config = read_run_config(args.model)
    if is_seq2seq_config(config):
        data = config["data"]
        pairs = eval_pairs(config, args.split)
        name = f"{data.get('task', 'the data')} ({args.split} split)"
        return [target for _, target in pairs], name, data.get("tgt")
    if run_task(config) != "instruct":
        raise ConfigError(
            f"{args.model} is neither an instruction nor a seq2seq run, so it has no references "
            "of its own: pass them with --references FILE"
        )
    spec = InstructionSpec.from_dict(config.get("data", {}))
    if args.data:
        entries = load_instructions(args.data, spec.format)
        return [entry.output for entry in entries], args.data, None
    entries = split_instructions(load_instructions(spec.data, spec.format))[args.split]
    return [entry.output for entry in entries], f"{spec.data} ({args.split} split)", None


def score_generations(args: argparse.Namespace) -> int:
    """Score --generations against --references (or the references the file or run holds)."""
    from gptlab.evaluation import format_text_metrics, metric_libraries, text_metrics

    metric_libraries()  # a missing library is the first error, not the last
    generations, references = read_generations(args.generations)
    source, language = None, None
    if args.references:
        from gptlab.data.parallel import read_lines

        references = [line.strip() for line in read_lines(args.references)]
        source = args.references
    elif references is not None:
        source = f"the references in {args.generations}"
    elif args.model:
        references, source, language = run_references(args)
    else:
        raise ConfigError(
            "--generations needs references: pass --references FILE (one a line), a .jsonl "
            f'whose objects have "{REFERENCE_FIELD}" fields, or an instruction or seq2seq RUN'
        )
    if len(generations) != len(references):
        raise DataError(
            f"{args.generations} has {len(generations):,} generations but {source} has "
            f"{len(references):,} references: they must match one to one"
        )
    if not references:
        raise DataError(f"{args.generations} has no generations")
    empty = next((n for n, text in enumerate(references, 1) if not text), None)
    if empty is not None:
        raise DataError(f"{source}, reference {empty} is empty")
    language = args.language or language or "en"
    result = text_metrics(generations, references, language=language)
    result.update(generations=str(args.generations), references=str(source), language=language)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{len(generations):,} generations in {args.generations} against {source}:")
    print(format_text_metrics(result))
    return 0
