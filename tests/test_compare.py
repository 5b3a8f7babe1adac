"""`gptlab compare` and `gptlab.comparison`: the corpora a fine-tuning run and its base name,
perplexities over the same validation tokens for every model, escaped generations side by side,
the Markdown variant, and the refusals of bad input.

Through the CLI's entry point in this process, as test_cli_finetune_lm does: a process of its own
for each command would spend seconds importing torch."""

from __future__ import annotations

import contextlib
import html
import io
import json
import shutil
from pathlib import Path

import pytest
from test_cli_train import TINY

from gptlab import cli, comparison
from gptlab.config import ClassifierConfig, GPTConfig
from gptlab.data.text import TokenData
from gptlab.evaluation import perplexity
from gptlab.generation import GenerationConfig
from gptlab.models.classifier import GPTClassifier
from gptlab.models.gpt import GPT
from gptlab.runs import task_sections, write_run_config
from gptlab.training.checkpoint import MODEL_FILE, TOKENIZER_DIR, save_weights

# Markup characters in the corpus, so that a prompt with <script> encodes with the character
# tokenizer, and the model's own output can hold < > & too.
BASE_LINES = [f"the quick brown fox <jumps/> over the lazy dog & {i % 7}\n" for i in range(120)]
NEW_LINES = [f"{i % 5} dog & lazy the over <jumps/> fox brown quick the\n" for i in range(80)]
STEPS = ["--max-iters", 4, "--eval-interval", 2, "--eval-iters", 1, "--batch-size", 2]
SCRIPT = "<script>the fox</script>"
GENERATE = ["--max-new-tokens", 8, "--seed", 3, "--device", "cpu"]


def main(*args) -> str:
    """Run gptlab in this process; its standard output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main([str(arg) for arg in args]) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A base trained by `gptlab train` and its fine-tuning by `gptlab finetune lm`."""
    folder = tmp_path_factory.mktemp("compare")
    (folder / "base.txt").write_text("".join(BASE_LINES))
    (folder / "new.txt").write_text("".join(NEW_LINES))
    a, b = folder / "A", folder / "B"
    main("train", *TINY, *STEPS, "--data", folder / "base.txt", "--out", a)
    main("finetune", "lm", a, "--data", folder / "new.txt", "--out", b, *STEPS[:6])
    return {"A": a, "B": b, "base": folder / "base.txt", "new": folder / "new.txt"}


def test_a_fine_tuning_run_names_its_corpus_and_its_bases(runs):
    models = comparison.load_entrants([str(runs["A"]), str(runs["B"])], "cpu")
    benchmarks, notes = comparison.find_benchmarks(models, [])
    assert notes == []
    assert [(b.source, b.roles) for b in benchmarks] == [
        (str(runs["base"]), ["training data of A", "original corpus of B"]),
        (str(runs["new"]), ["fine-tuning data of B"]),
    ]


def test_every_model_is_measured_on_the_same_validation_tokens(runs):
    models = comparison.load_entrants([str(runs["A"]), str(runs["B"])], "cpu")
    benchmarks, _ = comparison.find_benchmarks(models, [])
    results, notes = comparison.evaluate(models, benchmarks, "cpu")
    assert notes == []
    for j, corpus in enumerate([runs["base"], runs["new"]]):
        tokens = TokenData.from_file(corpus, models[0].tokenizer, 0.1).val
        for i, model in enumerate(models):
            assert results[i][j] == perplexity(model.model, tokens, 16, 8, "cpu")
    # The run's own validation split is what `gptlab eval RUN` measures.
    evaluated = json.loads(main("eval", runs["A"], "--json"))
    assert results[0][0] == {key: evaluated[key] for key in ("loss", "perplexity", "tokens")}


def test_html_report_shows_each_generation_escaped(runs, tmp_path):
    out = tmp_path / "report.html"
    main(
        "compare",
        runs["A"],
        runs["B"],
        "--prompt",
        SCRIPT,
        "--prompt",
        "the",
        "--out",
        out,
        *GENERATE,
    )
    page = out.read_text()
    assert "<script" not in page and html.escape(SCRIPT) in page
    models = comparison.load_entrants([str(runs["A"]), str(runs["B"])], "cpu")
    config = GenerationConfig(max_new_tokens=8, seed=3, overflow="slide")
    for row in comparison.generate_all(models, [SCRIPT, "the"], config):
        for text in row:
            assert not text.startswith("[not generated") and html.escape(text) in page
    assert page.count("data:image/png;base64,") == 1  # the curves, embedded


def test_markdown_report_has_the_table_and_the_curves_beside_it(runs, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("the fox\n\n| dog\n")
    out = tmp_path / "report.md"
    main("compare", runs["A"], runs["B"], "--prompts", prompts, "--out", out, *GENERATE)
    lines = out.read_text().splitlines()
    assert (
        f"| model | {runs['base']} (validation split) | {runs['new']} (validation split) |" in lines
    )
    assert sum(line.startswith(("| A |", "| B |")) for line in lines) == 2
    assert any(line.startswith("| \\| dog |") for line in lines)  # a pipe stays in its cell
    assert "![training curves](report-curves.png)" in lines
    assert (tmp_path / "report-curves.png").read_bytes().startswith(b"\x89PNG")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, runs) -> Path:
    """A classification run with the base's tokenizer (untrained: it only has to be refused)."""
    run = tmp_path_factory.mktemp("classifier") / "classifier"
    body = GPTConfig(vocab_size=32, context_length=16, n_layer=1, n_head=1, n_embd=8)
    model = GPTClassifier(GPT(body), ClassifierConfig(labels=["a", "b"], pad_id=0))
    shutil.copytree(runs["A"] / TOKENIZER_DIR, run / TOKENIZER_DIR)
    save_weights(model, run / MODEL_FILE)
    write_run_config(run, body, train={}, data={}, **task_sections(model))
    return run


@pytest.mark.parametrize(
    "args, message",
    [
        (["{A}", "{tmp}/missing", "--prompt", "x"], "no folder at"),
        (["{A}", "--prompts", "{tmp}/empty.txt"], "has no prompts"),
        (["{A}", "{A}"], "give the prompts"),
        (["{A}", "--prompt", "x", "--out", "{tmp}/report.pdf"], "must end in .html or .md"),
        (["{A}", "{classifier}", "--prompt", "x"], "compare takes language models"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(runs, classifier, tmp_path, capsys, args, message):
    (tmp_path / "empty.txt").write_text("\n  \n")
    paths = {"A": runs["A"], "classifier": classifier, "tmp": tmp_path}
    argv = ["compare", *(arg.format(**paths) for arg in args), "--device", "cpu"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "report.html").exists()
