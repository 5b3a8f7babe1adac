"""`gptlab seq2seq train`, `translate`, `eval`, `info` and `viz attention` on a tiny toy run, and
their bad-input errors: one line and exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gptlab.cli import main
from gptlab.training.checkpoint import MODEL_FILE, STATE_FILE, load_trainer_state

TINY = [
    "--task",
    "reverse",
    "--max-len",
    "5",
    "--n-embd",
    "16",
    "--n-head",
    "2",
    "--n-encoder-layer",
    "1",
    "--n-decoder-layer",
    "1",
    "--batch-size",
    "16",
    "--max-iters",
    "20",
    "--eval-interval",
    "10",
    "--val-size",
    "16",
    "--test-size",
    "16",
    "--log-interval",
    "5",
    "--device",
    "cpu",
    "--no-tensorboard",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("seq2seq") / "reverse"
    assert main(["seq2seq", "train", *TINY, "--out", str(out)]) == 0
    return out


def gptlab(capsys, *args) -> tuple[int, str, str]:
    status = main([str(a) for a in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_train_writes_a_seq2seq_run_directory(run_dir):
    config = json.loads((run_dir / "config.json").read_text())
    assert config["task"] == "seq2seq" and config["data"]["task"] == "reverse"
    assert config["model"]["n_embd"] == 16 and config["model"]["shared_embeddings"]
    assert (run_dir / MODEL_FILE).is_file() and (run_dir / "tokenizer").is_dir()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "val"] == [0, 10, 20]
    assert all(0.0 <= r["exact_match"] <= 1.0 for r in records if r["split"] == "val")


def test_resume_continues_to_the_new_step_count(run_dir, tmp_path, capsys):
    import shutil

    copy = tmp_path / "resumed"
    shutil.copytree(run_dir, copy)
    status, _, err = gptlab(capsys, "seq2seq", "train", "--resume", copy, "--max-iters", 30)
    assert status == 0, err
    assert load_trainer_state(copy / STATE_FILE)["step"] == 30
    status, _, err = gptlab(capsys, "seq2seq", "train", "--resume", copy, "--n-embd", 32)
    assert status == 2 and "only training settings" in err


def test_translate_prints_one_line_per_text_greedy_and_with_beams(run_dir, capsys):
    status, out, _ = gptlab(capsys, "translate", run_dir, "123", "45")
    assert status == 0 and len(out.splitlines()) == 2
    assert set("".join(out.split())) <= set("0123456789+")
    status, beams, _ = gptlab(capsys, "translate", run_dir, "123", "45", "--beam", 3)
    assert status == 0 and len(beams.splitlines()) == 2


def test_translate_file_writes_one_output_a_line(run_dir, tmp_path, capsys):
    source = tmp_path / "in.txt"
    source.write_text("12\n345\n9\n")
    status, _, _ = gptlab(capsys, "translate", run_dir, "--file", source, "--out", tmp_path / "o")
    assert status == 0 and len((tmp_path / "o").read_text().splitlines()) == 3


def test_eval_prints_loss_perplexity_and_exact_match(run_dir, capsys):
    status, out, _ = gptlab(capsys, "eval", run_dir, "--split", "test", "--json")
    result = json.loads(out)
    assert status == 0 and result["examples"] == 16
    assert result["perplexity"] == pytest.approx(2.718281828 ** result["loss"], rel=1e-6)
    status, out, _ = gptlab(capsys, "eval", run_dir, "--beam", 2)
    assert status == 0 and "exact match" in out and "beam 2" in out


def test_info_describes_the_encoder_decoder(run_dir, capsys):
    status, out, _ = gptlab(capsys, "info", run_dir)
    assert status == 0
    assert "1 encoder, 1 decoder" in out and "seq2seq: reverse" in out


def test_viz_attention_draws_cross_attention(run_dir, tmp_path, capsys):
    out = tmp_path / "alignment.png"
    status, _, err = gptlab(capsys, "viz", "attention", run_dir, "--prompt", "1234", "--out", out)
    assert status == 0, err
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def gpt_run(tmp_path):
    """A language-model run's config.json: enough for translate to recognise it."""
    folder = tmp_path / "gpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"task": "lm", "model": {"n_layer": 1}}))
    return folder


@pytest.mark.parametrize(
    "case",
    ["empty text", "over-long source", "unknown symbol", "gpt run", "missing run", "no text"],
)
def test_bad_input_is_one_line_and_exit_2(case, run_dir, gpt_run, tmp_path, capsys):
    args = {
        "empty text": ["translate", run_dir, "  "],
        "over-long source": ["translate", run_dir, "1" * 50],
        "unknown symbol": ["translate", run_dir, "12x"],
        "gpt run": ["translate", gpt_run, "12"],
        "missing run": ["translate", tmp_path / "nowhere", "12"],
        "no text": ["translate", run_dir],
    }[case]
    status, _, err = gptlab(capsys, *args)
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("gptlab translate: error:")


def test_a_bad_input_in_a_real_process_has_no_traceback(run_dir):
    result = subprocess.run(
        [sys.executable, "-m", "gptlab", "translate", str(run_dir), "1" * 50],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
