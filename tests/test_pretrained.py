"""Hugging Face GPT-2 checkpoints in and out: every loading path gives transformers' logits."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from gptlab.errors import CheckpointError
from gptlab.evaluation import perplexity
from gptlab.models.gpt import GPT
from gptlab.pretrained import export_hf, load_model

transformers = pytest.importorskip("transformers")

SHAPES = [
    dict(n_layer=2, n_head=2, n_embd=32, n_positions=64),
    dict(n_layer=3, n_head=4, n_embd=64, n_positions=128),
    dict(n_layer=1, n_head=3, n_embd=48, n_positions=32),
]


def hf_gpt2(shape: dict, seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        vocab_size=50257, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **shape
    )
    return transformers.GPT2LMHeadModel(config).eval()


@pytest.fixture
def hf_folder(tmp_path, gpt2_tokenizer_dir, request):
    shape = getattr(request, "param", SHAPES[0])
    model = hf_gpt2(shape)
    folder = tmp_path / "hf"
    model.save_pretrained(folder)
    # transformers 5 builds a tokenizer from files only through from_pretrained on a folder
    tokenizer = transformers.GPT2TokenizerFast.from_pretrained(gpt2_tokenizer_dir)
    tokenizer.save_pretrained(folder)
    return folder, model


def hf_logits(model, idx):
    with torch.no_grad():
        return model(input_ids=idx).logits


def gptlab_logits(model, idx):
    with torch.no_grad():
        return model(idx, all_logits=True)[0]


def random_ids(n: int = 24, batch: int = 2) -> torch.Tensor:
    return torch.randint(0, 50257, (batch, n), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("hf_folder", SHAPES, indirect=True, ids=["2x32", "3x64", "1x48"])
def test_a_hugging_face_folder_loads_with_equal_logits(hf_folder):
    folder, hf = hf_folder
    model, tokenizer, info = load_model(folder)
    assert info["kind"] == "hf-folder" and tokenizer.kind == "gpt2"
    idx = random_ids()
    torch.testing.assert_close(gptlab_logits(model, idx), hf_logits(hf, idx), atol=1e-5, rtol=1e-5)


def test_gpt_from_pretrained_takes_a_folder(hf_folder):
    folder, hf = hf_folder
    model = GPT.from_pretrained(str(folder))
    idx = random_ids()
    torch.testing.assert_close(gptlab_logits(model, idx), hf_logits(hf, idx), atol=1e-5, rtol=1e-5)


def test_perplexity_equals_transformers_loss(hf_folder):
    folder, hf = hf_folder
    model, _, _ = load_model(folder)
    tokens = random_ids(n=130, batch=1)[0].numpy()
    ours = perplexity(model, tokens, block_size=64, batch_size=2)
    # transformers' loss over the same windows: consecutive windows of 64 predictions
    losses, counts = [], []
    for start in range(0, len(tokens) - 1, 64):
        window = torch.from_numpy(tokens[start : start + 65]).long()[None]
        with torch.no_grad():
            logits = hf(input_ids=window[:, :-1]).logits
        losses.append(torch.nn.functional.cross_entropy(logits[0], window[0, 1:]).item())
        counts.append(window.size(1) - 1)
    theirs = sum(loss * n for loss, n in zip(losses, counts)) / sum(counts)
    assert ours["loss"] == pytest.approx(theirs, abs=1e-5)
    assert ours["perplexity"] == pytest.approx(math.exp(theirs), rel=1e-5)


def test_import_then_export_round_trips_through_transformers(hf_folder, tmp_path):
    folder, hf = hf_folder
    run_dir, exported = tmp_path / "run", tmp_path / "exported"
    for args in (["import", folder, "--out", run_dir], ["export", run_dir, "--out", exported]):
        result = subprocess.run(
            [sys.executable, "-m", "gptlab", *map(str, args)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
    assert json.loads((run_dir / "config.json").read_text())["model"]["n_layer"] == 2
    run_model, _, info = load_model(run_dir)
    assert info["kind"] == "run"
    back = transformers.GPT2LMHeadModel.from_pretrained(exported).eval()
    tokenizer = transformers.GPT2TokenizerFast.from_pretrained(exported)
    assert tokenizer("Hello world")["input_ids"] == [15496, 995]
    idx = random_ids()
    expected = hf_logits(hf, idx)
    torch.testing.assert_close(gptlab_logits(run_model, idx), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(hf_logits(back, idx), expected, atol=1e-5, rtol=1e-5)


def test_export_of_a_trained_model_gives_the_same_logits_in_transformers(
    tmp_path, gpt2_tokenizer_dir
):
    from gptlab.config import GPTConfig
    from gptlab.tokenizers import GPT2Tokenizer

    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, context_length=64)).eval()
    tokenizer = GPT2Tokenizer.from_files(
        gpt2_tokenizer_dir / "vocab.json", gpt2_tokenizer_dir / "merges.txt"
    )
    export_hf(model, tokenizer, tmp_path / "out")
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "out").eval()
    idx = random_ids()
    torch.testing.assert_close(hf_logits(hf, idx), gptlab_logits(model, idx), atol=1e-5, rtol=1e-5)


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    with pytest.raises(CheckpointError, match="GPT-2"):
        load_model(tmp_path)


def test_a_folder_without_weights_is_refused(hf_folder):
    folder, _ = hf_folder
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_model(folder)


def test_weights_of_another_shape_are_refused(hf_folder):
    folder, _ = hf_folder
    config = json.loads((folder / "config.json").read_text())
    config["n_embd"] = 64
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="shape"):
        load_model(folder)


def test_a_model_name_offline_without_cache_is_one_clear_error(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "gptlab", "info", "gpt2"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 2
    assert "openai-community/gpt2" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_info_describes_a_folder(hf_folder):
    folder, _ = hf_folder
    result = subprocess.run(
        [sys.executable, "-m", "gptlab", "info", str(folder)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "layers" in result.stdout and "parameters" in result.stdout
