"""`gptlab finetune lm`: the run directory, its tokenizer and base, a lower validation loss on
the new corpus, `eval` and `sample` of the run, exact resume, and the refusals of bad input.

Through the CLI's entry point in this process: cli.main is all `python -m gptlab` runs (the
real processes of the training machinery they share are tested in test_cli_train), and a
process of its own for each command would spend seconds importing torch."""

from __future__ import annotations

import contextlib
import filecmp
import io
import json
import shutil
from pathlib import Path

import pytest
import torch
from test_cli_train import TINY, train_losses

from gptlab import cli
from gptlab.config import ClassifierConfig, GPTConfig
from gptlab.data.text import TokenData
from gptlab.models.classifier import GPTClassifier
from gptlab.models.gpt import GPT
from gptlab.runs import task_sections, write_run_config
from gptlab.tokenizers import load_tokenizer
from gptlab.training.checkpoint import (
    MODEL_FILE,
    STATE_FILE,
    TOKENIZER_DIR,
    load_trainer_state,
    save_weights,
)

STEPS = 12
# The base learns the fox sentence; the new corpus says the same words (so the same characters,
# which a character tokenizer needs) in another order.
BASE_LINES = [f"the quick brown fox jumps over the lazy dog {i % 7}\n" for i in range(300)]
NEW_LINES = [f"{i % 5} dog lazy the over jumps fox brown quick the\n" for i in range(200)]
FINETUNE = [
    "--batch-size",
    4,
    "--eval-interval",
    4,
    "--eval-iters",
    2,
    "--log-interval",
    1,
    "--lr",
    3e-3,
    "--lr-decay-iters",
    STEPS,
    "--dropout",
    0.1,  # resume must replay its draws
    "--device",
    "cpu",
    "--no-tensorboard",
]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("corpora")
    (folder / "base.txt").write_text("".join(BASE_LINES))
    (folder / "new.txt").write_text("".join(NEW_LINES))
    return folder / "base.txt", folder / "new.txt"


def main(*args) -> None:
    assert cli.main([str(arg) for arg in args]) == 0


@pytest.fixture(scope="module")
def base(tmp_path_factory, corpora) -> Path:
    """A character-level language model, pretrained for a few steps by `gptlab train`."""
    out = tmp_path_factory.mktemp("base") / "base"
    main("train", *TINY, "--data", corpora[0], "--out", out, "--max-iters", 10)
    return out


def evaluate(capsys, model, *args) -> dict:
    capsys.readouterr()
    main("eval", model, *args, "--json", "--device", "cpu")
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, base, corpora) -> tuple[Path, str]:
    """(run directory, stderr) of a short domain fine-tuning of the base on the new corpus."""
    out = tmp_path_factory.mktemp("finetuned") / "run"
    args = ["finetune", "lm", base, "--data", corpora[1], "--out", out, "--max-iters", STEPS]
    with contextlib.redirect_stderr(io.StringIO()) as stderr:
        main(*args, *FINETUNE)
    return out, stderr.getvalue()


def test_finetuning_lowers_the_validation_loss_on_the_new_corpus(tmp_path, capsys, base, finetuned):
    run, _ = finetuned
    after = evaluate(capsys, run)
    # The base on the same tokens: the run's validation split, as text (a character a token).
    config = json.loads((run / "config.json").read_text())["data"]
    tokenizer = load_tokenizer(run / TOKENIZER_DIR)
    val = TokenData.from_file(Path(config["data"]), tokenizer, config["val_fraction"]).val
    (tmp_path / "val.txt").write_text(tokenizer.decode([int(i) for i in val]))
    before = evaluate(capsys, base, "--data", tmp_path / "val.txt")
    assert before["tokens"] == after["tokens"]
    assert after["loss"] < before["loss"] - 0.1


def test_the_run_keeps_the_bases_tokenizer_and_records_its_base_and_corpus(
    base, corpora, finetuned
):
    run, _ = finetuned
    files = sorted(p.name for p in (base / TOKENIZER_DIR).iterdir())
    assert sorted(p.name for p in (run / TOKENIZER_DIR).iterdir()) == files
    _, mismatch, errors = filecmp.cmpfiles(base / TOKENIZER_DIR, run / TOKENIZER_DIR, files, False)
    assert not mismatch and not errors
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == "lm"
    assert config["base"] == {"source": str(base), "kind": "run"}
    assert config["data"]["data"] == str(corpora[1]) and config["data"]["val_fraction"] == 0.1
    assert config["finetune"] == {"base_context_length": 16, "context_length": 16, "dropout": 0.1}
    assert config["train"]["lr"] == 3e-3 and config["train"]["max_iters"] == STEPS


def test_finetuning_prints_its_base_tokens_steps_and_best_perplexity(base, finetuned):
    _, stderr = finetuned
    assert f"of {base} (run)" in stderr and "with its own tokenizer" in stderr
    assert "train / " in stderr and f"{STEPS} steps" in stderr
    assert "best val loss" in stderr and "perplexity" in stderr.splitlines()[-1]


def test_sample_reads_the_run(capsys, finetuned):
    capsys.readouterr()
    main("sample", finetuned[0], "--max-new-tokens", 8, "--device", "cpu")
    assert capsys.readouterr().out.strip()


def test_resume_gives_the_same_losses_and_weights_as_one_run(tmp_path, base, corpora, finetuned):
    run, _ = finetuned
    split = tmp_path / "split"
    args = ["finetune", "lm", base, "--data", corpora[1], "--out", split, "--max-iters", STEPS // 2]
    main(*args, *FINETUNE)
    main("finetune", "lm", "--resume", split, "--max-iters", STEPS)
    assert len(train_losses(split)) == STEPS
    assert train_losses(split) == pytest.approx(train_losses(run), abs=1e-6)
    a = load_trainer_state(run / STATE_FILE)["model"]
    b = load_trainer_state(split / STATE_FILE)["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=0)


def test_context_length_crops_the_models_window(tmp_path, base, corpora):
    out = tmp_path / "cropped"
    args = ["finetune", "lm", base, "--data", corpora[1], "--out", out, "--max-iters", 1]
    main(*args, "--context-length", 8, "--device", "cpu", "--no-tensorboard")
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["context_length"] == 8
    assert config["finetune"]["base_context_length"] == 16


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, base) -> Path:
    """A classification run with the base's tokenizer (untrained: it only has to be refused)."""
    run = tmp_path_factory.mktemp("classifier") / "classifier"
    body = GPTConfig(vocab_size=32, context_length=16, n_layer=1, n_head=1, n_embd=8)
    model = GPTClassifier(GPT(body), ClassifierConfig(labels=["a", "b"], pad_id=0))
    shutil.copytree(base / TOKENIZER_DIR, run / TOKENIZER_DIR)
    save_weights(model, run / MODEL_FILE)
    write_run_config(run, body, train={}, data={}, **task_sections(model))
    return run


LM = ["finetune", "lm", "{base}", "--device", "cpu", "--out", "{tmp}/new"]


@pytest.mark.parametrize(
    "args, message",
    [
        ([*LM, "--data", "{tmp}/missing.txt"], "neither a text file"),
        ([*LM, "--data", "{tmp}/short.txt"], "fewer than one window"),
        ([*LM], "--data"),
        (["finetune", "lm", "{classifier}", "--data", "{new}"], "not a language model"),
        (["finetune", "lm", "{base}", "--resume", "{run}"], "MODEL or --resume"),
        (["finetune", "lm", "--resume", "{base}"], "not a domain fine-tuning run"),
        (["finetune", "lm", "--resume", "{run}", "--data", "{new}"], "only training settings"),
        (["finetune", "lm", "{base}", "--data", "{new}", "--out", "{run}"], "already holds a run"),
        (["train", "--resume", "{run}"], "gptlab finetune lm --resume"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(
    tmp_path, capsys, base, corpora, classifier, finetuned, args, message
):
    (tmp_path / "short.txt").write_text("the fox\n")
    paths = {
        "base": base,
        "classifier": classifier,
        "new": corpora[1],
        "run": finetuned[0],
        "tmp": tmp_path,
    }
    status = cli.main([arg.format(**paths) for arg in args])
    stderr = capsys.readouterr().err
    assert status == 2
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert not (tmp_path / "new").exists()
