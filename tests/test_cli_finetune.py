"""`gptlab finetune classify`, and `eval`, `classify` and `export` of its runs, through real
processes: the run directory, the reports, predictions, transformers parity and resume; and
the refusals of bad input, through the CLI's entry point in this process."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import shared_file
from test_cli_train import gptlab, train_losses

from gptlab import cli
from gptlab.config import ClassifierConfig, GPTConfig
from gptlab.data.labelled import pad_batch
from gptlab.models.classifier import GPTClassifier
from gptlab.models.gpt import GPT
from gptlab.pretrained import load_model
from gptlab.runs import task_sections, write_run_config
from gptlab.tokenizers import GPT2Tokenizer
from gptlab.training.checkpoint import (
    MODEL_FILE,
    STATE_FILE,
    TOKENIZER_DIR,
    load_trainer_state,
    save_weights,
)
from gptlab.training.freezing import freeze

# GPT-2's shape and vocabulary, shrunk to 2 blocks of width 32.
BODY = GPTConfig(vocab_size=50257, context_length=64, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
LABELS = ["ham", "spam"]
HAM = ["see you at lunch", "call me when you get home", "thanks for dinner", "ok, on my way"]
SPAM = ["WIN a free prize now", "claim your cash reward", "urgent! you won", "free entry: text WIN"]
MESSAGES = 40  # cut 70/10/20: 28 train (7 batches of 4), 4 val, 8 test
TEST_SIZE = 8
STEPS = 8  # a little over one epoch
TEXTS = ["Congratulations, you WIN a free cruise! Call now", "See you at lunch?"]


@pytest.fixture(scope="module")
def language_model(tmp_path_factory) -> Path:
    """A language-model run directory with GPT-2's tokenizer, as `gptlab import` writes one
    (untrained: fine-tuning needs only its shape)."""
    tokenizer = GPT2Tokenizer.from_pretrained(
        str(shared_file("gpt2-tokenizer", "vocab.json").parent)
    )
    run = tmp_path_factory.mktemp("lm") / "lm"
    run.mkdir()
    torch.manual_seed(0)
    model = GPT(BODY)
    save_weights(model, run / MODEL_FILE)
    tokenizer.save(run / TOKENIZER_DIR)
    write_run_config(run, BODY, train={}, data={}, **task_sections(model))
    return run


def write_messages(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def messages(tmp_path_factory) -> Path:
    """Labelled messages in a CSV with a column besides text and label."""
    rows = [
        {
            "id": f"m{i}",
            "text": f"{(SPAM if i % 2 else HAM)[i // 2 % 4]} ({i})",
            "label": LABELS[i % 2],
        }
        for i in range(MESSAGES)
    ]
    return write_messages(tmp_path_factory.mktemp("data") / "messages.csv", rows)


def finetune(model, data, out, *extra) -> subprocess.CompletedProcess:
    """`gptlab finetune classify` with tiny, fast settings (and dropout, which resume must replay)."""
    return gptlab(
        "finetune",
        "classify",
        model,
        "--data",
        data,
        "--out",
        out,
        "--batch-size",
        4,
        "--lr",
        1e-3,
        "--warmup-iters",
        2,
        "--lr-decay-iters",
        STEPS,
        "--eval-interval",
        2,
        "--log-interval",
        1,
        "--dropout",
        0.1,
        "--device",
        "cpu",
        "--no-tensorboard",
        *extra,
    )


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, language_model, messages) -> tuple[Path, str]:
    """A classifier run of STEPS steps, and what the command printed on stderr."""
    out = tmp_path_factory.mktemp("runs") / "spam"
    result = finetune(language_model, messages, out, "--max-iters", STEPS)
    return out, result.stderr


@pytest.fixture(scope="module")
def run(finetuned) -> Path:
    return finetuned[0]


def test_finetune_writes_a_classification_run_directory(run, messages):
    assert {MODEL_FILE, STATE_FILE, "config.json", "metrics.jsonl"} <= {
        p.name for p in run.iterdir()
    }
    assert (run / TOKENIZER_DIR).is_dir()
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == "classify"
    assert config["classifier"]["labels"] == LABELS
    assert config["data"]["data"] == str(messages)
    assert len(train_losses(run)) == STEPS


def test_finetune_prints_its_trainable_and_total_parameters(finetuned):
    model = GPTClassifier(GPT(BODY), ClassifierConfig(labels=LABELS))
    trainable, total = freeze(model, "last-block")
    assert f"{trainable:,} of {total:,} parameters (last-block)" in finetuned[1]


def test_eval_reports_accuracy_f1_per_class_and_the_confusion_matrix(run):
    report = json.loads(gptlab("eval", run, "--json", "--device", "cpu").stdout)
    confusion = report["confusion"]
    assert report["labels"] == LABELS and report["examples"] == TEST_SIZE
    assert sum(map(sum, confusion)) == TEST_SIZE
    assert report["accuracy"] == pytest.approx((confusion[0][0] + confusion[1][1]) / TEST_SIZE)
    assert list(report["per_class"]) == LABELS
    assert [c["support"] for c in report["per_class"].values()] == [sum(row) for row in confusion]
    f1 = [c["f1"] for c in report["per_class"].values()]
    assert report["macro_f1"] == pytest.approx(sum(f1) / len(f1))


def test_eval_on_a_file_of_one_class_reports_that_classs_recall(tmp_path, run):
    rows = [{"text": text, "label": "spam"} for text in SPAM]
    spam_only = write_messages(tmp_path / "spam.csv", rows)
    report = json.loads(
        gptlab("eval", run, "--data", spam_only, "--json", "--device", "cpu").stdout
    )
    assert report["examples"] == len(SPAM) and report["per_class"]["ham"]["support"] == 0
    assert report["per_class"]["spam"]["recall"] == pytest.approx(report["accuracy"])


def test_classify_prints_one_json_object_a_text(run):
    result = gptlab("classify", run, *TEXTS, "--json", "--device", "cpu")
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [answer["text"] for answer in answers] == TEXTS
    for answer in answers:
        probabilities = answer["probabilities"]
        assert list(probabilities) == LABELS
        assert sum(probabilities.values()) == pytest.approx(1, abs=1e-5)
        assert answer["label"] == max(probabilities, key=probabilities.get)


def test_classify_a_file_keeps_its_columns_and_adds_the_predictions(tmp_path, run, messages):
    out = tmp_path / "predicted.csv"
    gptlab("classify", run, "--file", messages, "--out", out, "--device", "cpu")
    given, written = read_csv(messages), read_csv(out)
    assert list(written[0]) == [*given[0], "predicted", "p_ham", "p_spam"]
    assert [{key: row[key] for key in given[0]} for row in written] == given
    for row in written:
        assert row["predicted"] == max(LABELS, key=lambda name: float(row[f"p_{name}"]))
        assert float(row["p_ham"]) + float(row["p_spam"]) == pytest.approx(1, abs=1e-5)


def test_export_is_a_sequence_classifier_transformers_loads_with_equal_logits(tmp_path, run):
    transformers = pytest.importorskip("transformers")
    gptlab("export", run, "--out", tmp_path / "hf")
    hf = transformers.GPT2ForSequenceClassification.from_pretrained(tmp_path / "hf").eval()
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    model, tokenizer, _ = load_model(run, task="classify")
    rows = tokenizer.encode_batch(TEXTS)
    assert hf_tokenizer(TEXTS)["input_ids"] == rows
    assert hf.config.id2label == dict(enumerate(LABELS))
    idx, mask = pad_batch(rows, model.head.pad_id, "right")  # different lengths: one row padded
    with torch.no_grad():
        expected = hf(input_ids=idx, attention_mask=mask.long()).logits
        logits, _ = model(idx, mask)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def test_resume_gives_the_same_losses_and_weights_as_one_run(
    tmp_path, language_model, messages, run
):
    split = tmp_path / "split"
    finetune(language_model, messages, split, "--max-iters", STEPS // 2)
    gptlab("finetune", "classify", "--resume", split, "--max-iters", STEPS)
    straight_losses, split_losses = train_losses(run), train_losses(split)
    assert len(split_losses) == STEPS
    assert split_losses == pytest.approx(straight_losses, abs=1e-6)
    a = load_trainer_state(run / STATE_FILE)["model"]
    b = load_trainer_state(split / STATE_FILE)["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=0)


def test_resume_without_max_iters_keeps_the_runs_own_length(tmp_path, run):
    """The run was given --max-iters; resuming it must not fall back to --epochs' length."""
    copy = shutil.copytree(run, tmp_path / "copy")
    gptlab("finetune", "classify", "--resume", copy)
    assert train_losses(copy) == train_losses(run)
    assert json.loads((copy / "config.json").read_text())["train"]["max_iters"] == STEPS


BAD_FILES = {
    "no_text.csv": "body,label\nhello,ham\nwin cash,spam\n",
    "one_class.csv": "text,label\nhello,ham\nbye,ham\n",
}
FINETUNE = ["finetune", "classify", "{lm}", "--device", "cpu", "--out", "{tmp}/new"]


@pytest.mark.parametrize(
    "args, message",
    [
        ([*FINETUNE, "--data", "{tmp}/missing.csv"], "neither a labelled file"),
        ([*FINETUNE, "--data", "{tmp}/no_text.csv"], "no column 'text'"),
        ([*FINETUNE, "--data", "{tmp}/one_class.csv"], "only one class"),
        ([*FINETUNE, "--data", "{tmp}/in.csv", "--train", "last-99"], "last-99"),
        ([*FINETUNE, "--data", "{tmp}/in.csv", "--fractions", "0.5,0.5"], "--fractions"),
        (["finetune", "classify", "{lm}", "--resume", "{run}"], "MODEL or --resume"),
        (
            ["finetune", "classify", "{lm}", "--data", "{tmp}/in.csv", "--out", "{run}"],
            "already holds a run",
        ),
        (["classify", "{lm}", "hello"], "is a language model, not a classifier"),
        (["classify", "{run}"], "give texts to classify"),
        (["classify", "{run}", "--file", "{tmp}/in.csv", "--out", "{tmp}/in.csv"], "--out must"),
        (["sample", "{run}"], "is a classifier, not a language model"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(
    tmp_path, capsys, language_model, messages, run, args, message
):
    for name, text in BAD_FILES.items():
        (tmp_path / name).write_text(text)
    shutil.copy(messages, tmp_path / "in.csv")
    paths = {"lm": language_model, "run": run, "tmp": tmp_path}
    # In this process: cli.main is all `python -m gptlab` runs, and a process of its own for
    # each case would spend seconds importing torch to print one line.
    status = cli.main([arg.format(**paths) for arg in args])
    stderr = capsys.readouterr().err
    assert status == 2
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert not (tmp_path / "new").exists()
    assert (tmp_path / "in.csv").read_text() == messages.read_text()
