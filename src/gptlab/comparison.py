"""Comparing language models side by side: what fine-tuning gained and what it forgot.

A comparison measures every model on the same data and asks every model the same prompts:

- the data are what the runs name: a run's config.json "data" is its corpus (or, for an
  instruction run, its instructions), and a fine-tuning run's "base" leads to the base's run and
  its corpus, the original one. A text corpus is measured on its validation split (the last
  `val_fraction` of its tokens, as training held it out), instructions on their test split with
  the response-only loss, as `gptlab eval` measures them;
- the tokens are the first model's, so every number of a column is over the same tokens. A
  perplexity is per token: a model with another tokenizer would be measured per token of another
  vocabulary, so it gets no numbers, and the report says why;
- the prompts are decoded with one seed and one setting for every model; an instruction run gets
  each prompt as an instruction, in the prompt format it was trained with.

The report is a self-contained HTML page (its figure embedded as a PNG, no outside CSS or
script) or Markdown with the figure beside it. Every piece of text in it is escaped: prompts
and generations are untrusted.
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from gptlab.errors import CheckpointError, ConfigError, ContextLengthError, TokenizerError

TEXT, INSTRUCTIONS = "text", "instructions"
DEFAULT_VAL_FRACTION = 0.1  # what `gptlab train` holds out
ANSWER_TOKENS = 128  # the longest greedy answer scored with ROUGE-L (as `gptlab eval --generate`)


@dataclass
class Entrant:
    """A model in the comparison: its short name, how it was named, and what load_model gave."""

    name: str
    spec: str
    model: object
    tokenizer: object
    info: dict

    @property
    def config(self) -> dict:
        return self.info.get("config", {})


@dataclass
class Benchmark:
    """Data every model is measured on, and what it is to the models (their "roles")."""

    kind: str  # TEXT: a corpus's validation split; INSTRUCTIONS: an instruction test split
    source: str  # a text file or dataset name; for instructions, the run's "data" section
    data: dict = field(default_factory=dict)
    roles: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        if self.kind == TEXT:
            return f"{self.source} (validation split)"
        return f"{self.source} (test split, response loss)"


@dataclass
class Comparison:
    models: list[Entrant]
    benchmarks: list[Benchmark]
    results: list[list[dict | None]]  # [model][benchmark]; None: not comparable
    prompts: list[str]
    generations: list[list[str]]  # [prompt][model]
    decoding: str
    curves_png: bytes | None
    notes: list[str]


def load_entrants(specs: list[str], device, checkpoint: str = "best") -> list[Entrant]:
    """The language models `specs` name (run directories, Hugging Face folders, model names)."""
    from gptlab.pretrained import load_model

    entrants = []
    for spec in specs:
        model, tokenizer, info = load_model(spec, device, checkpoint)
        if info["task"] != "lm":
            raise ConfigError(
                f"{spec} is a classifier: compare takes language models (runs of gptlab train, "
                "finetune lm or finetune instruct; Hugging Face GPT-2 models)"
            )
        name = Path(spec).name if info["kind"] in ("run", "hf-folder") else str(spec)
        if name in (e.name for e in entrants):
            name = str(spec)
        entrants.append(Entrant(name, str(spec), model, tokenizer, info))
    return entrants


def find_benchmarks(entrants: list[Entrant], extra: list[str]) -> tuple[list[Benchmark], list]:
    """(benchmarks, notes): the data the runs and their bases were trained on, then the text
    files or datasets of `extra`; each only once, however many models name it."""
    from gptlab.data.text import resolve_text
    from gptlab.errors import GptlabError

    found: dict[str, Benchmark] = {}
    notes = []
    for entrant in entrants:
        for kind, data, role in _lineage(entrant, notes):
            if kind == TEXT:
                try:
                    key = str(resolve_text(data["data"]).resolve())
                except GptlabError as error:
                    notes.append(f"left out the {role}: {error}")
                    continue
            else:
                key = json.dumps(data, sort_keys=True)
            found.setdefault(key, Benchmark(kind, str(data["data"]), data)).roles.append(role)
    for spec in extra:
        key = str(resolve_text(spec).resolve())  # a missing --data is the user's to fix: raise
        found.setdefault(key, Benchmark(TEXT, spec, {"data": spec})).roles.append("from --data")
    return list(found.values()), notes


def _lineage(entrant: Entrant, notes: list[str]):
    """(kind, data section, role) of what a run was trained on, then of its base, and so on
    while the bases are run directories that are still there."""
    from gptlab.runs import read_run_config, run_task

    config, first = entrant.config, True
    while config:
        data = config.get("data", {})
        kind = INSTRUCTIONS if run_task(config) == "instruct" else TEXT
        if "data" in data:
            if first:
                what = "fine-tuning data" if "base" in config else "training data"
            else:
                what = "original corpus" if "base" not in config else "base's fine-tuning data"
            yield kind, data, f"{what} of {entrant.name}"
        base, first = config.get("base"), False
        if not base or base.get("kind") != "run":
            return
        try:
            config = read_run_config(base["source"])
        except CheckpointError as error:
            notes.append(
                f"the base of {entrant.name} is not here ({error}): pass its corpus with --data"
            )
            return


def evaluate(entrants: list[Entrant], benchmarks: list[Benchmark], device, batch_size: int = 8):
    """(results [model][benchmark], notes): each model's loss and perplexity on each benchmark,
    over the first model's tokens; None for a model whose tokenizer is another."""
    from gptlab.commands.eval import instruction_report
    from gptlab.data.text import TokenData, resolve_text
    from gptlab.evaluation import metric_libraries, perplexity
    from gptlab.tasks.instruction import InstructionSpec

    reference = entrants[0]
    notes = [
        f"{e.name} has another tokenizer ({e.tokenizer.kind}) than {reference.name} "
        f"({reference.tokenizer.kind}): its perplexities would count other tokens, so they are "
        "left out"
        for e in entrants
        if not _same_tokenizer(e.tokenizer, reference.tokenizer)
    ]
    results = [[None] * len(benchmarks) for _ in entrants]
    scoring = any(benchmark.kind == INSTRUCTIONS for benchmark in benchmarks)
    if scoring:
        try:
            metric_libraries()
        except ConfigError as error:  # the report goes on without ROUGE-L, and says why
            notes.append(f"no ROUGE-L: {error}")
            scoring = False
    for j, benchmark in enumerate(benchmarks):
        if benchmark.kind == TEXT:
            fraction = benchmark.data.get("val_fraction", DEFAULT_VAL_FRACTION)
            tokens = TokenData.from_file(
                resolve_text(benchmark.source), reference.tokenizer, fraction
            ).val
        for i, e in enumerate(entrants):
            if not _same_tokenizer(e.tokenizer, reference.tokenizer):
                continue
            if benchmark.kind == TEXT:
                context = e.model.config.context_length
                results[i][j] = perplexity(e.model, tokens, context, batch_size, device)
            else:
                spec = InstructionSpec.from_dict(benchmark.data)
                result = instruction_report(
                    e.model, e.tokenizer, spec, device, "test", None, batch_size
                )
                if scoring:
                    result.update(answer_scores(e, spec, benchmark.data, device, batch_size))
                results[i][j] = result
    return results, notes


def answer_scores(e: Entrant, spec, run_data: dict, device, batch_size: int = 8) -> dict:
    """ROUGE-L and BLEU of a model's greedy answers to the test split's instructions, asked in
    the prompt format of the run that names them (a base model is asked the same way)."""
    from gptlab.data.instructions import load_instructions, split_instructions
    from gptlab.generation import GenerationConfig
    from gptlab.tasks.instruction import generate_responses, response_scores

    entries = split_instructions(load_instructions(spec.data, spec.format))["test"]
    greedy = GenerationConfig(ANSWER_TOKENS, strategy="greedy", overflow="slide")
    answers = generate_responses(
        e.model, e.tokenizer, {"data": run_data}, entries, greedy, batch_size
    )
    return response_scores(answers, [entry.output for entry in entries])


def _same_tokenizer(a, b) -> bool:
    return (a.kind, a.fingerprint()) == (b.kind, b.fingerprint())


def generate_all(entrants: list[Entrant], prompts: list[str], config) -> list[list[str]]:
    """What each model writes after each prompt ([prompt][model]), all with `config` (its seed
    included); an instruction run gets the prompt as an instruction, in its prompt format."""
    from gptlab.generation import generate_text
    from gptlab.tasks.instruction import instruction_prompt, is_instruction_run, response_config

    rows = [[] for _ in prompts]
    for e in entrants:
        instruct = is_instruction_run(e.info)
        settings = response_config(config)
        for row, prompt in zip(rows, prompts, strict=True):
            text = instruction_prompt(e.config, prompt) if instruct else prompt
            try:
                row.append(
                    generate_text(e.model, e.tokenizer, [text], settings if instruct else config)[0]
                )
            except (TokenizerError, ContextLengthError) as error:
                row.append(f"[not generated: {error}]")
    return rows


def curves_png(entrants: list[Entrant]) -> bytes | None:
    """The training curves of the runs that logged metrics, as one PNG; None when none did."""
    from gptlab.viz.curves import METRICS_FILE, loss_comparison
    from gptlab.viz.figure import png_bytes

    runs = {
        e.name: Path(e.info["source"])
        for e in entrants
        if e.info["kind"] == "run" and (Path(e.info["source"]) / METRICS_FILE).is_file()
    }
    return png_bytes(loss_comparison(runs)) if runs else None


def describe_decoding(config) -> str:
    how = (
        "greedy"
        if config.strategy == "greedy" or config.temperature == 0
        else f"sampling at temperature {config.temperature:g}"
        + (f", top-k {config.top_k}" if config.top_k else "")
    )
    return f"{how}, seed {config.seed}, at most {config.max_new_tokens} new tokens"


# -- the report ---------------------------------------------------------------------------


def _cell(result: dict | None) -> str:
    if result is None:
        return "n/a (other tokenizer)"
    cell = f"{result['perplexity']:.3f} (loss {result['loss']:.4f})"
    if "rouge_l" in result:
        cell += f", ROUGE-L {result['rouge_l']:.2f}"
    return cell


def _model_line(e: Entrant) -> str:
    from gptlab.runs import run_task

    task = run_task(e.config)
    what = "instruction run" if task == "instruct" else e.info["kind"]
    return f"{e.name}: {e.spec} ({what}, tokenizer {e.tokenizer.kind})"


STYLE = """\
body { font-family: system-ui, sans-serif; max-width: 70rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1rem 0; width: 100%; }
th, td { border: 1px solid #ccc; padding: 0.4rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f3f3f7; }
td.number { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.text { white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 0.9rem; }
img { max-width: 100%; }
.note { color: #8a4b00; }
"""


def to_html(c: Comparison) -> str:
    """The report as one self-contained HTML page."""
    e = html.escape
    names = "".join(f"<th>{e(m.name)}</th>" for m in c.models)
    parts = [
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">',
        f"<title>{e(_title(c))}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>",
        f"<h1>{e(_title(c))}</h1>",
        "<ul>" + "".join(f"<li>{e(_model_line(m))}</li>" for m in c.models) + "</ul>",
        "<h2>Metrics</h2>",
        "<p>Perplexity (and mean loss per token); lower is better.</p>",
        "<table>\n<tr><th>model</th>"
        + "".join(f"<th>{e(b.title)}</th>" for b in c.benchmarks)
        + "</tr>",
    ]
    for model, row in zip(c.models, c.results, strict=True):
        cells = "".join(f'<td class="number">{e(_cell(r))}</td>' for r in row)
        parts.append(f"<tr><th>{e(model.name)}</th>{cells}</tr>")
    parts.append("</table>")
    parts.append(
        "<ul>"
        + "".join(f"<li>{e(b.source)}: {e(', '.join(b.roles))}</li>" for b in c.benchmarks)
        + "</ul>"
    )
    parts += [f'<p class="note">{e(note)}</p>' for note in c.notes]
    if c.curves_png is not None:
        data = base64.b64encode(c.curves_png).decode("ascii")
        parts += [
            "<h2>Training curves</h2>",
            f'<img alt="training curves" src="data:image/png;base64,{data}">',
        ]
    parts += [
        "<h2>Generations</h2>",
        f"<p>{e(c.decoding)}.</p>",
        f"<table>\n<tr><th>prompt</th>{names}</tr>",
    ]
    for prompt, row in zip(c.prompts, c.generations, strict=True):
        cells = "".join(f'<td class="text">{e(text)}</td>' for text in row)
        parts.append(f'<tr><td class="text">{e(prompt)}</td>{cells}</tr>')
    parts.append("</table>\n</body>\n</html>\n")
    return "\n".join(parts)


def to_markdown(c: Comparison, curves_file: str | None) -> str:
    """The report as Markdown; `curves_file` is where the figure's PNG is, beside it."""
    m = _markdown_cell
    lines = [f"# {m(_title(c))}", ""]
    lines += [f"- {m(_model_line(model))}" for model in c.models]
    lines += ["", "## Metrics", "", "Perplexity (and mean loss per token); lower is better.", ""]
    lines.append("| model | " + " | ".join(m(b.title) for b in c.benchmarks) + " |")
    lines.append("| --- |" + " ---: |" * len(c.benchmarks))
    for model, row in zip(c.models, c.results, strict=True):
        lines.append(f"| {m(model.name)} | " + " | ".join(_cell(r) for r in row) + " |")
    lines.append("")
    lines += [f"- {m(b.source)}: {m(', '.join(b.roles))}" for b in c.benchmarks]
    lines += [line for note in c.notes for line in ("", f"> {m(note)}")]
    if curves_file is not None:
        lines += ["", "## Training curves", "", f"![training curves]({curves_file})"]
    lines += ["", "## Generations", "", f"{m(c.decoding)}.", ""]
    lines.append("| prompt | " + " | ".join(m(model.name) for model in c.models) + " |")
    lines.append("| --- |" + " --- |" * len(c.models))
    for prompt, row in zip(c.prompts, c.generations, strict=True):
        lines.append(f"| {m(prompt)} | " + " | ".join(m(text) for text in row) + " |")
    return "\n".join(lines) + "\n"


def _title(c: Comparison) -> str:
    return "Comparing " + ", ".join(model.name for model in c.models)


def _markdown_cell(text: str) -> str:
    """Text as one table cell that renders as itself: HTML escaped (Markdown passes HTML
    through), Markdown's punctuation backslashed, newlines as <br>."""
    text = re.sub(r"([\\`*_\[\]|#])", r"\\\1", html.escape(text, quote=False))
    return text.replace("\r", "").replace("\n", "<br>")
