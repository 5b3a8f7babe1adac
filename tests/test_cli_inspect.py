"""`gptlab inspect`: every analysis writes its figure on a tiny run, --json prints its numbers,
and bad input is one line and exit status 2."""

from __future__ import annotations

import json

import pytest
from test_demo import TINY_CORPUS, write_tiny_run

from gptlab import cli


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return str(write_tiny_run(tmp_path_factory.mktemp("runs") / "tiny"))


@pytest.fixture
def gptlab(capsys):
    def call(*argv: str) -> tuple[int, str, str]:
        code = cli.main(["inspect", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return call


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text(TINY_CORPUS * 12)
    return str(path)


def analyses(corpus: str) -> dict[str, list[str]]:
    return {
        "logit-lens": ["--prompt", "To be, or not"],
        "heads": ["--prompt", "To be, or not to be", "--length", "8", "--batch", "2"],
        "attribute": ["--prompt", "To be, or not", "--token", "t", "--versus", "a"],
        "patch": ["--prompt", "To be", "--corrupt", "To qe", "--answer", "t", "--wrong", "a"],
        "ablate": ["--data", corpus, "--batches", "1", "--batch-size", "2", "--method", "mean"],
    }


@pytest.mark.parametrize("analysis", ["logit-lens", "heads", "attribute", "patch", "ablate"])
def test_each_analysis_writes_its_figure_and_json(gptlab, tiny_run, corpus, tmp_path, analysis):
    out = tmp_path / f"{analysis}.png"
    code, stdout, stderr = gptlab(
        analysis, tiny_run, *analyses(corpus)[analysis], "--out", str(out), "--json"
    )
    assert code == 0, stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    numbers = json.loads(stdout)
    key = {
        "logit-lens": "top_tokens",
        "heads": "induction",
        "attribute": "heads",
        "patch": "by_head",
        "ablate": "loss_change",
    }[analysis]
    assert key in numbers
    assert f"wrote {out}" in stderr


@pytest.mark.parametrize(
    "argv, words",
    [
        (["logit-lens", "--prompt", "a" * 40], "longer than the model's context of 32"),
        (["logit-lens", "--prompt", ""], "the prompt is empty"),
        (["attribute", "--prompt", "To be", "--token", "to"], "is 2 tokens"),
        (["attribute", "--prompt", "To be", "--token", "t", "--position", "9"], "--position"),
        (["patch", "--prompt", "To be", "--corrupt", "To be,", "--answer", "t"], "same length"),
        (["patch", "--prompt", "To be", "--corrupt", "To qe", "--answer", "tt"], "--answer"),
        (["heads", "--batch", "0"], "--batch must be at least 1"),
        (["ablate", "--block", "99"], "longer than the model's context"),
        (["logit-lens", "--prompt", "To be", "--out", "lens.jpg"], "ending in .png"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(gptlab, tiny_run, tmp_path, argv, words):
    out = ["--out", str(tmp_path / "x.png")] if "--out" not in argv else []
    code, _, stderr = gptlab(argv[0], tiny_run, *argv[1:], *out)
    assert code == 2
    assert words in stderr and len(stderr.strip().splitlines()) == 1


def test_a_missing_model_is_exit_2(gptlab, tmp_path):
    code, _, stderr = gptlab("logit-lens", str(tmp_path / "nothing"), "--prompt", "hi")
    assert code == 2 and "no folder" in stderr


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        cli.main(["inspect", "patch", "--help"])
    text = capsys.readouterr().out
    assert "gptlab inspect patch gpt2 --prompt" in text and "--corrupt" in text


def test_a_hugging_face_folder_is_inspected_too(gptlab, tmp_path, gpt2_tokenizer_dir):
    import torch

    from gptlab.config import GPTConfig
    from gptlab.models.gpt import GPT
    from gptlab.pretrained import export_hf
    from gptlab.tokenizers import GPT2Tokenizer

    torch.manual_seed(0)
    config = GPTConfig(vocab_size=50257, context_length=32, n_layer=1, n_head=2, n_embd=16)
    folder = export_hf(
        GPT(config), GPT2Tokenizer.from_pretrained(gpt2_tokenizer_dir), tmp_path / "hf"
    )
    out = tmp_path / "attribution.png"
    code, stdout, stderr = gptlab(
        "attribute", str(folder), "--prompt", "The cat sat on the", "--token", " mat",
        "--out", str(out), "--json",
    )  # fmt: skip
    assert code == 0, stderr
    numbers = json.loads(stdout)
    assert numbers["sum_of_terms"] == pytest.approx(numbers["logit"], abs=1e-4)
    code, _, stderr = gptlab(
        "attribute", str(folder), "--prompt", "The cat", "--token", "mat tress", "--out", str(out)
    )
    assert code == 2 and "not one" in stderr
