"""`gptlab finetune ... --lora / --prompt-tuning`, and the commands that read adapter runs
(classify, eval, sample, info, merge), through the CLI's entry point in this process: what the
run directory holds, that the base is checked, resume, merge, and the refusals of bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_cli_finetune import LABELS, language_model, messages  # noqa: F401 (fixtures)

from gptlab import cli
from gptlab.pretrained import load_model
from gptlab.training.checkpoint import MODEL_FILE, STATE_FILE, load_trainer_state

STEPS = 6
TINY = [
    "--batch-size", "4", "--eval-interval", "3", "--log-interval", "1", "--device", "cpu",
    "--no-tensorboard", "--max-iters", str(STEPS),
]  # fmt: skip


def gptlab(*args) -> int:
    return cli.main([str(arg) for arg in args])


@pytest.fixture(scope="module")
def base(tmp_path_factory, language_model) -> Path:  # noqa: F811
    """A copy of the tiny base, which tests may change without touching other modules' runs."""
    path = tmp_path_factory.mktemp("base") / "base"
    shutil.copytree(language_model, path)
    return path


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, base, messages) -> Path:  # noqa: F811
    out = tmp_path_factory.mktemp("runs") / "spam-lora"
    status = gptlab(
        "finetune", "classify", base, "--data", messages, "--out", out,
        "--lora", "r=4,alpha=8,targets=q,v,c_fc", *TINY,
    )  # fmt: skip
    assert status == 0
    return out


@pytest.fixture(scope="module")
def prompt_run(tmp_path_factory, base) -> Path:
    corpus = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    corpus.write_text("".join(f"the quick brown fox {i % 5} jumps\n" for i in range(300)))
    out = tmp_path_factory.mktemp("runs") / "fox-prompt"
    status = gptlab(
        "finetune", "lm", base, "--data", corpus, "--out", out, "--prompt-tuning", "5",
        "--prompt-init-text", "the fox", "--eval-iters", "2", *TINY,
    )  # fmt: skip
    assert status == 0
    return out


def test_a_lora_run_saves_only_the_adapter_and_the_head(lora_run):
    saved = load_file(str(lora_run / MODEL_FILE))
    assert "score.weight" in saved
    assert all(".lora.default." in name for name in saved if name != "score.weight")
    assert {name.rsplit(".", 1)[-1] for name in saved if ".lora." in name} == {"q", "v", "all"}
    state = load_trainer_state(lora_run / STATE_FILE)["model"]
    assert set(state) == set(saved)


def test_a_lora_run_records_its_adapter_and_its_base_with_a_checksum(lora_run, base):
    from gptlab.adapters import base_checksum

    config = json.loads((lora_run / "config.json").read_text())
    assert config["adapter"] == {
        "type": "lora", "r": 4, "alpha": 8.0, "dropout": 0.05, "targets": ["q", "v", "c_fc"],
    }  # fmt: skip
    assert config["base"]["path"] == str(base.resolve())
    base_model, _, _ = load_model(base)
    assert config["base"]["sha256"] == base_checksum(base_model)
    assert config["finetune"]["train"] == "lora"
    assert config["train"]["lr"] == 5e-4  # the adapter's default, ten times full fine-tuning's


def test_the_lora_run_loads_as_base_plus_adapter_and_classifies(lora_run, capsys):
    from gptlab.adapters import adapter_kind

    model, _, info = load_model(lora_run)
    assert adapter_kind(model) == "lora" and info["task"] == "classify"
    assert gptlab("classify", lora_run, "WIN a free prize now", "see you at lunch") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(line.split()[0] in LABELS for line in lines)
    assert gptlab("eval", lora_run) == 0
    assert "accuracy" in capsys.readouterr().out


def test_merge_writes_a_plain_model_with_the_same_predictions(lora_run, tmp_path, capsys):
    from gptlab.adapters import adapter_kind

    out = tmp_path / "merged"
    assert gptlab("merge", lora_run, "--out", out) == 0
    merged, _, _ = load_model(out)
    adapted, _, _ = load_model(lora_run)
    assert adapter_kind(merged) is None
    assert "adapter" not in json.loads((out / "config.json").read_text())
    idx = torch.randint(0, 50257, (3, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(merged(idx)[0], adapted(idx)[0], atol=1e-5, rtol=1e-5)


def test_resume_continues_a_lora_run(lora_run, tmp_path):
    copy = tmp_path / "resumed"
    shutil.copytree(lora_run, copy)
    assert gptlab("finetune", "classify", "--resume", copy, "--max-iters", STEPS + 3) == 0
    assert load_trainer_state(copy / STATE_FILE)["step"] == STEPS + 3


def test_a_prompt_run_samples_evaluates_and_describes_itself(prompt_run, capsys):
    saved = load_file(str(prompt_run / MODEL_FILE))
    assert list(saved) == ["gpt.wte.prompt"] and saved["gpt.wte.prompt"].shape == (5, 32)
    config = json.loads((prompt_run / "config.json").read_text())
    assert config["model"]["context_length"] == 64  # the GPT's own, not what the prompt leaves
    capsys.readouterr()
    assert gptlab("sample", prompt_run, "--prompt", "the quick", "--max-new-tokens", 5) == 0
    assert capsys.readouterr().out.startswith("the quick")
    assert gptlab("eval", prompt_run) == 0
    assert "perplexity" in capsys.readouterr().out
    assert gptlab("info", prompt_run) == 0
    info = capsys.readouterr().out
    assert "prompt tuning, 5 virtual tokens (text init)" in info and "context       59" in info


def test_a_prompt_run_cannot_be_merged(prompt_run, tmp_path, capsys):
    assert gptlab("merge", prompt_run, "--out", tmp_path / "m") == 2
    assert "nothing to merge" in capsys.readouterr().err


def test_an_adapter_on_another_base_is_refused(lora_run, base, tmp_path, capsys):
    moved = tmp_path / "run"
    shutil.copytree(lora_run, moved)
    config = json.loads((moved / "config.json").read_text())
    config["base"]["sha256"] = "0" * 64  # as if trained on other weights
    (moved / "config.json").write_text(json.dumps(config))
    assert gptlab("classify", moved, "hello") == 2
    assert "is not the base this adapter was trained on" in capsys.readouterr().err


def test_a_missing_base_is_a_clear_error(lora_run, tmp_path, capsys):
    moved = tmp_path / "run"
    shutil.copytree(lora_run, moved)
    config = json.loads((moved / "config.json").read_text())
    config["base"].update(source="gone", path=str(tmp_path / "gone"))
    (moved / "config.json").write_text(json.dumps(config))
    assert gptlab("eval", moved) == 2
    assert "the base model of this adapter run is not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--lora", "r=0"], "rank r must be a whole number of 1 or more"),
        (["--lora", "targets=c_atn"], "no Linear layer of the model matches the LoRA target"),
        (["--lora", "--prompt-tuning", "4"], "choose one adapter"),
        (["--lora", "--train", "all"], "leave --train out"),
        (["--prompt-tuning", "64"], "leaves no room"),
        (["--prompt-init", "text"], "go with --prompt-tuning"),
    ],
)
def test_bad_adapter_flags_are_one_line_errors(base, messages, tmp_path, capsys, flags, message):  # noqa: F811
    status = gptlab(
        "finetune", "classify", base, "--data", messages, "--out", tmp_path / "r", *flags, *TINY
    )
    err = capsys.readouterr().err
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r" / STATE_FILE).exists()


def test_resume_refuses_a_new_adapter(lora_run, capsys):
    assert gptlab("finetune", "classify", "--resume", lora_run, "--lora", "r=8") == 2
    assert "continues a run as it was" in capsys.readouterr().err


def test_the_demo_loads_an_adapter_run_and_names_its_adapter(lora_run, prompt_run):
    from gptlab.demo.models import describe, load_model_spec

    for run, words in ((lora_run, "LoRA r=4, alpha=8"), (prompt_run, "prompt tuning, 5 virtual")):
        model, tokenizer, info = load_model_spec(str(run), "cpu")
        line = describe(str(run), model, tokenizer, info)
        assert words in line and "on " in line and not model.training
