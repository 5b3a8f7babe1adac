"""`gptlab export --format onnx|torch-export`: the model with its KV cache as inputs and outputs,
decoded by ONNX Runtime and by a torch.export program loaded without gptlab, against gptlab."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from gptlab import cli
from gptlab.config import GPTConfig
from gptlab.export.step import CachedStep, check_against_gptlab, empty_cache, greedy
from gptlab.generation import GenerationConfig, generate
from gptlab.models.gpt import GPT
from gptlab.runs import write_run_config
from gptlab.tokenizers.char import CharTokenizer
from gptlab.training.checkpoint import MODEL_FILE, TOKENIZER_DIR, save_weights

TOKENIZER = CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyz .,\n")


def tiny_model() -> GPT:
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=TOKENIZER.vocab_size, context_length=24, n_layer=2, n_head=2, n_embd=16
    )
    model = GPT(config)
    with torch.no_grad():
        for p in model.parameters():  # wide weights: varied greedy tokens
            p.normal_(std=0.3)
        model.wpe.weight *= 4
    return model.eval()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("run") / "tiny"
    path.mkdir()
    model = tiny_model()
    save_weights(model, path / MODEL_FILE)
    TOKENIZER.save(path / TOKENIZER_DIR)
    write_run_config(path, model.config, train={}, data={})
    return path


def test_the_cached_step_decodes_a_batch_as_generate_does():
    model = tiny_model()
    prompts = [[1, 2, 3], [4, 5, 6]]
    with torch.no_grad():
        tokens, _ = greedy(CachedStep(model), torch.tensor(prompts), 8, *empty_cache(model, 2))
    config = GenerationConfig(max_new_tokens=8, strategy="greedy")
    assert tokens.tolist() == generate(model, prompts, config)
    assert check_against_gptlab(model, CachedStep(model), [7], 10)["max_abs_diff"] < 1e-5


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:# The axis name")  # the exporter's note on shared dimensions
def test_onnx_runtime_decodes_the_exported_graph_like_gptlab(run, tmp_path, capsys):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    out = tmp_path / "onnx"
    assert cli.main(["export", str(run), "--format", "onnx", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ONNX Runtime: 16 greedy tokens equal gptlab's" in printed
    assert (out / "model.onnx").is_file()


@pytest.mark.slow
def test_a_torch_export_program_runs_without_gptlab(run, tmp_path, capsys):
    out = tmp_path / "program"
    assert cli.main(["export", str(run), "--format", "torch-export", "--out", str(out)]) == 0
    assert "16 greedy tokens equal gptlab's" in capsys.readouterr().out
    # A fresh interpreter in which gptlab cannot be imported decodes 6 tokens with the program.
    code = f"""
import sys, json
sys.modules["gptlab"] = None  # any import of gptlab now fails
import torch
step = torch.export.load({str(out / "model.pt2")!r}).module()
keys = torch.zeros(2, 1, 2, 24, 8); values = torch.zeros_like(keys)
logits, keys, values = step(torch.tensor([[1, 2, 3]]), keys, values, torch.arange(3))
tokens = [int(logits.argmax())]
for i in range(5):
    logits, keys, values = step(torch.tensor([[tokens[-1]]]), keys, values, torch.tensor([3 + i]))
    tokens.append(int(logits.argmax()))
print(json.dumps(tokens))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    config = GenerationConfig(max_new_tokens=6, strategy="greedy")
    assert json.loads(result.stdout) == generate(tiny_model(), [[1, 2, 3]], config)[0]
