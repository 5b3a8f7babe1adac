"""`gptlab train`, `sample` and `eval` through real processes: runs, resume, kill, DDP, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from conftest import shared_file

from gptlab.tokenizers import load_tokenizer
from gptlab.training.checkpoint import (
    MODEL_FILE,
    STATE_FILE,
    TOKENIZER_DIR,
    load_trainer_state,
)

TINY = [
    "--preset",
    "tiny",
    "--n-layer",
    "1",
    "--n-embd",
    "16",
    "--context-length",
    "16",
    "--batch-size",
    "4",
    "--log-interval",
    "1",
    "--device",
    "cpu",
    "--no-tensorboard",
]


def gptlab(*args, check=True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "gptlab", *map(str, args)], capture_output=True, text=True, **kwargs
    )
    if check and result.returncode != 0:
        raise AssertionError(f"gptlab {' '.join(map(str, args))} failed:\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    lines = [f"line {i}: the quick brown fox jumps over the lazy dog {i % 7}\n" for i in range(400)]
    path.write_text("".join(lines))
    return path


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, corpus) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run"
    gptlab(
        "train",
        *TINY,
        "--data",
        corpus,
        "--out",
        out,
        "--max-iters",
        30,
        "--eval-interval",
        10,
        "--eval-iters",
        2,
    )
    return out


def train_losses(run_dir: Path) -> list[float]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [m["loss"] for m in lines if m["split"] == "train"]


def test_train_writes_a_complete_run_directory(trained_run):
    names = {p.name for p in trained_run.iterdir()}
    assert {"config.json", MODEL_FILE, STATE_FILE, "metrics.jsonl", "tokenizer"} <= names
    config = json.loads((trained_run / "config.json").read_text())
    assert config["model"]["n_embd"] == 16 and config["train"]["max_iters"] == 30
    assert len(train_losses(trained_run)) == 30


def test_tensorboard_events_are_written(tmp_path, corpus):
    out = tmp_path / "run"
    args = [a for a in TINY if a != "--no-tensorboard"]
    gptlab(
        "train",
        *args,
        "--data",
        corpus,
        "--out",
        out,
        "--max-iters",
        4,
        "--eval-interval",
        2,
        "--eval-iters",
        1,
    )
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))


def test_the_local_base_preset_trains_on_english_mix_with_gpt2s_tokenizer(tmp_path):
    for dataset, filename in [
        ("gpt2-tokenizer", "vocab.json"),
        ("tinyshakespeare", "input.txt"),
        ("poetry", "whitman-leaves.txt"),
        ("multi30k", "train.en.gz"),
    ]:
        shared_file(dataset, filename)  # skip unless the tokenizer and the mix's sources are there
    out = tmp_path / "run"
    shrunk = ["--n-layer", 1, "--n-head", 2, "--n-embd", 48, "--context-length", 32]
    gptlab(
        "train", "--preset", "gpt2-mini", *shrunk, "--max-iters", 2, "--eval-interval", 2,
        "--eval-iters", 1, "--batch-size", 2, "--device", "cpu", "--no-tensorboard", "--out", out,
    )  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert config["data"] == {"data": "english-mix", "tokenizer": "gpt2", "val_fraction": 0.1}
    assert config["model"]["vocab_size"] == 50257 and config["model"]["dropout"] == 0.1
    assert (config["train"]["lr"], config["train"]["beta2"], config["train"]["patience"]) == (
        1e-3,
        0.99,
        4,
    )
    assert load_tokenizer(out / TOKENIZER_DIR).kind == "gpt2"


def sample_args(run_dir: Path, seed: int) -> tuple:
    return (
        "sample",
        run_dir,
        "--prompt",
        "line",
        "--max-new-tokens",
        20,
        "--seed",
        seed,
        "--device",
        "cpu",
    )


def test_sample_prints_text_from_the_run(trained_run):
    result = gptlab(*sample_args(trained_run, seed=1))
    assert result.stdout.startswith("line")
    assert len(result.stdout) > len("line") + 10


def test_sample_with_a_seed_is_reproducible(trained_run):
    args = sample_args(trained_run, seed=3)
    assert gptlab(*args).stdout == gptlab(*args).stdout


def test_sample_with_a_draft_prints_the_models_own_greedy_text(trained_run):
    """The run drafting for itself: every guess kept, the same text as greedy alone."""
    args = (*sample_args(trained_run, seed=1), "--greedy", "--overflow", "stop")
    alone = gptlab(*args)
    drafted = gptlab(*args, "--draft", trained_run, "--draft-tokens", 3)
    assert drafted.stdout == alone.stdout
    assert "guesses kept (100%)" in drafted.stderr


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "greedy decoding only"),
        (["--greedy", "--num-samples", "2"], "drop --compare and --num-samples"),
        (["--greedy", "--draft-tokens", "0"], "--draft-tokens must be at least 1"),
    ],
)
def test_sample_refuses_a_draft_it_cannot_use_in_one_line(trained_run, extra, message):
    result = gptlab(
        "sample", trained_run, "--device", "cpu", "--draft", trained_run, *extra, check=False
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_eval_reports_loss_and_perplexity_as_json(trained_run, corpus):
    result = json.loads(gptlab("eval", trained_run, "--json", "--device", "cpu").stdout)
    assert result["perplexity"] == pytest.approx(2.718281828 ** result["loss"], rel=1e-6)
    assert result["tokens"] > 0
    on_file = json.loads(
        gptlab("eval", trained_run, "--data", corpus, "--json", "--device", "cpu").stdout
    )
    assert on_file["tokens"] > result["tokens"]


def test_resume_gives_the_same_losses_and_weights_as_one_run(tmp_path, corpus):
    common = [
        *TINY,
        "--data",
        corpus,
        "--eval-interval",
        5,
        "--eval-iters",
        2,
        "--lr-decay-iters",
        20,
        "--dropout",
        0.1,
    ]
    gptlab("train", *common, "--out", tmp_path / "straight", "--max-iters", 20)
    gptlab("train", *common, "--out", tmp_path / "split", "--max-iters", 10)
    gptlab("train", "--resume", tmp_path / "split", "--max-iters", 20)
    straight, split = train_losses(tmp_path / "straight"), train_losses(tmp_path / "split")
    assert len(straight) == len(split) == 20
    assert straight == pytest.approx(split, abs=1e-6)
    a = load_trainer_state(tmp_path / "straight" / STATE_FILE)["model"]
    b = load_trainer_state(tmp_path / "split" / STATE_FILE)["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=0)


KILLABLE = textwrap.dedent(
    """
    import sys, time, torch
    from gptlab import cli
    from gptlab.training import checkpoint

    real_save, saves = torch.save, []

    def slow_save(obj, path, *args, **kwargs):
        saves.append(path)
        if len(saves) == 3:  # the third checkpoint: write half a file, then hang until killed
            real_save(obj, path, *args, **kwargs)
            data = open(path, "rb").read()
            open(path, "wb").write(data[: len(data) // 2])
            print("SAVING", flush=True)
            time.sleep(600)
        real_save(obj, path, *args, **kwargs)

    checkpoint.torch.save = slow_save
    sys.exit(cli.main(sys.argv[1:]))
    """
)


def test_a_run_killed_while_saving_resumes_from_its_last_good_checkpoint(tmp_path, corpus):
    out = tmp_path / "run"
    script = tmp_path / "killable.py"
    script.write_text(KILLABLE)
    args = [
        "train",
        *TINY,
        "--data",
        corpus,
        "--out",
        out,
        "--max-iters",
        40,
        "--eval-interval",
        5,
        "--eval-iters",
        1,
    ]
    proc = subprocess.Popen(
        [sys.executable, script, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.time() + 120
        while proc.stdout.readline().strip() != "SAVING":
            assert time.time() < deadline and proc.poll() is None, (
                "the run never reached its third checkpoint"
            )
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert list(out.glob(".trainer_state.pt.*.tmp")), (
        "the kill should have left a half-written temporary file"
    )
    state = load_trainer_state(out / STATE_FILE)  # the previous checkpoint, intact
    assert state["step"] == 5

    gptlab("train", "--resume", out)
    assert load_trainer_state(out / STATE_FILE)["step"] == 40
    assert not list(out.glob(".*.tmp"))
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and len(train_losses(out)) == 40


def test_two_processes_match_one_process_with_accumulation(tmp_path, corpus):
    common = [*TINY, "--data", corpus, "--max-iters", 6, "--eval-interval", 0]
    gptlab("train", *common, "--out", tmp_path / "one", "--grad-accum", 2)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "gptlab",
            "train",
            *map(str, common),
            "--out",
            str(tmp_path / "two"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert train_losses(tmp_path / "one") == pytest.approx(train_losses(tmp_path / "two"), abs=1e-5)


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--preset", "nope"], "invalid choice"),
        (["train", "--lr", "-1", "--max-iters", "1"], "lr must be positive"),
        (["train", "--compile-mode", "fast", "--max-iters", "1"], "invalid choice"),
        (["train", "--data", "/no/such/file.txt"], "neither a text file nor a known dataset"),
        (["train", "--resume", "/no/such/run"], "no run directory"),
        (["sample", "/no/such/run"], "no folder at /no/such/run"),
        (["eval", "/no/such/run"], "no folder at /no/such/run"),
        (["sample", "tests/no_such_run"], "no folder at tests/no_such_run"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(args, message):
    result = gptlab(*args, check=False)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--top-p", "1.5"], "top_p"),
        (["--top-p", "0"], "top_p"),
        (["--temperature", "-1"], "temperature"),
        (["--prompt", "\u2603"], "\u2603"),
    ],
)
def test_sample_rejects_bad_settings_in_one_line(trained_run, args, message):
    result = gptlab("sample", trained_run, "--device", "cpu", *args, check=False)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_train_refuses_to_overwrite_an_existing_run(trained_run, corpus):
    result = gptlab("train", *TINY, "--data", corpus, "--out", trained_run, check=False)
    assert result.returncode == 2 and "--resume" in result.stderr


def test_empty_corpus_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    result = gptlab("train", *TINY, "--data", empty, "--out", tmp_path / "run", check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
