"""`gptlab viz` and `gptlab.viz`: each picture from a tiny run made here, and its errors."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from gptlab import cli
from gptlab.config import GPTConfig
from gptlab.evaluation import classification_metrics
from gptlab.models.gpt import GPT
from gptlab.runs import write_run_config
from gptlab.tokenizers.char import CharTokenizer
from gptlab.training.checkpoint import MODEL_FILE, TOKENIZER_DIR, save_weights
from gptlab.viz import attention_weights, cosine_similarity_matrix, project_2d
from gptlab.viz.classification import confusion_matrix_figure, row_shares
from gptlab.viz.figure import DPI

TEXT = "ROMEO: But soft, what light through yonder window breaks?\nJULIET: Ay me!\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory as `gptlab train` writes it, with an untrained tiny model and fake metrics."""
    run = tmp_path_factory.mktemp("viz") / "run"
    run.mkdir()
    tokenizer = CharTokenizer.from_text(TEXT)
    config = GPTConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size, n_layer=2, n_head=2)
    torch.manual_seed(0)
    model = GPT(config)
    tokenizer.save(run / TOKENIZER_DIR)
    write_run_config(run, config, {}, {"data": "inline", "tokenizer": "char"})
    save_weights(model, run / MODEL_FILE)
    lines = [
        {"step": step, "split": "train", "loss": 4.0 - step / 50, "lr": 1e-3 * min(1, step / 20)}
        for step in range(10, 110, 10)
    ] + [{"step": step, "split": "val", "loss": 4.1 - step / 60} for step in (50, 100)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return run


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    """A classification run directory as `gptlab finetune classify` writes it (untrained), whose
    data is a small CSV file beside it."""
    from gptlab.tasks.classification import DataSpec, classifier_from_body

    folder = tmp_path_factory.mktemp("viz_classifier")
    rows = ["text,label"] + [f"message number {i},{'spam' if i % 3 else 'ham'}" for i in range(30)]
    (folder / "messages.csv").write_text("\n".join(rows) + "\n")
    tokenizer = CharTokenizer.from_text("message number 0123456789")
    torch.manual_seed(0)
    body = GPT(GPTConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size))
    model = classifier_from_body(body, ["ham", "spam"], pad_id=0)
    run = folder / "run"
    run.mkdir()
    tokenizer.save(run / TOKENIZER_DIR)
    spec = DataSpec(str(folder / "messages.csv"))
    write_run_config(
        run, body.config, {}, spec.to_dict(), task="classify", classifier=model.head.to_dict()
    )
    save_weights(model, run / MODEL_FILE)
    return run


@pytest.fixture
def viz(monkeypatch):
    """`gptlab viz ARGS...` in this process, returning the exit status; `viz` is registered
    whether or not cli.COMMANDS lists it yet."""
    if "viz" not in cli.COMMANDS:
        monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, "viz"])
    return lambda *args: cli.main(["viz", *map(str, args)])


def png_size(path) -> tuple[int, int]:
    height, width = imread(path).shape[:2]
    return width, height


def test_embeddings_map_of_a_char_model_is_a_png_of_the_expected_size(run_dir, tmp_path, viz):
    out = tmp_path / "embeddings.png"
    assert viz("embeddings", run_dir, "--out", out) == 0
    assert png_size(out) == (10 * DPI, 8 * DPI)


def test_embeddings_of_chosen_words(run_dir, tmp_path, viz):
    out = tmp_path / "words.png"
    words = ["ROMEO", "JULIET", "light", "window", "soft"]
    assert viz("embeddings", run_dir, "--words", *words, "--out", out) == 0
    assert png_size(out) == (10 * DPI, 8 * DPI)


def test_positions_show_learned_and_sinusoidal_side_by_side(run_dir, tmp_path, viz):
    out = tmp_path / "positions.png"
    assert viz("positions", run_dir, "--out", out) == 0
    assert png_size(out) == (12 * DPI, 10 * DPI)


def test_attention_grid_and_single_head(run_dir, tmp_path, viz):
    grid, single = tmp_path / "grid.png", tmp_path / "single.png"
    assert viz("attention", run_dir, "--prompt", "ROMEO: But", "--out", grid) == 0
    assert (
        viz("attention", run_dir, "--prompt", "ROMEO", "--layer", 1, "--head", 0, "--out", single)
        == 0
    )
    assert png_size(single) == (9 * DPI, int(8.8 * DPI))
    assert png_size(grid)[0] > png_size(grid)[1] * 0.5


def test_curves_from_metrics_jsonl(run_dir, tmp_path, viz):
    out = tmp_path / "curves.png"
    assert viz("curves", run_dir, "--out", out) == 0
    assert png_size(out) == (10 * DPI, 7 * DPI)


def test_recomputed_attention_reproduces_the_models_attention_output(run_dir):
    from gptlab.runs import load_run

    model, tokenizer, _ = load_run(run_dir)
    ids = torch.tensor(tokenizer.encode("JULIET: Ay me"))
    weights = attention_weights(model, ids)  # (n_layer, nh, T, T)
    outputs = {}
    attn = model.h[1].attn
    attn.register_forward_hook(lambda module, args, output: outputs.setdefault("y", output))
    attn.register_forward_pre_hook(lambda module, args: outputs.setdefault("x", args[0]))
    model(ids[None])
    _, _, v = attn.c_attn(outputs["x"]).split(attn.n_embd, dim=2)
    v = v.view(1, len(ids), attn.n_head, -1).transpose(1, 2)  # (1, nh, T, hs)
    y = (weights[1][None] @ v).transpose(1, 2).reshape(1, len(ids), -1)
    torch.testing.assert_close(attn.c_proj(y), outputs["y"])
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
    assert torch.all(weights.triu(1) == 0)  # nothing attends to a later token


def test_cosine_similarity_of_positions_is_one_on_the_diagonal():
    table = torch.randn(12, 8)
    similarity = cosine_similarity_matrix(table)
    torch.testing.assert_close(similarity.diagonal(), torch.ones(12))
    torch.testing.assert_close(similarity, similarity.T)


def test_pca_finds_the_direction_of_largest_variance():
    generator = torch.Generator().manual_seed(0)
    points = torch.randn(200, 5, generator=generator) * torch.tensor([10.0, 1, 1, 1, 0.1])
    projected = project_2d(points.numpy(), "pca")
    assert projected.shape == (200, 2)
    assert abs(np.corrcoef(projected[:, 0], points[:, 0].numpy())[0, 1]) > 0.99


@pytest.mark.parametrize(
    "method, module, install",
    [("umap", "umap", "uv sync --extra umap"), ("tsne", "sklearn.manifold", "uv sync --extra viz")],
)
def test_a_projection_without_its_extra_says_how_to_install_it(
    run_dir, tmp_path, viz, monkeypatch, capsys, method, module, install
):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import` of it fail
    status = viz("embeddings", run_dir, "--method", method, "--out", tmp_path / "map.png")
    message = capsys.readouterr().err.strip()
    assert status == 2
    assert message.count("\n") == 0
    assert install in message and "--method pca" in message


REPORT = classification_metrics([0, 0, 0, 1, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1, 1, 1], ["ham", "spam"])


def test_confusion_cells_give_the_count_and_the_share_of_the_true_class():
    axes = confusion_matrix_figure(REPORT).axes[0]
    assert [text.get_text() for text in axes.texts] == [
        "3\n75.0%",
        "1\n25.0%",
        "0\n0.0%",
        "4\n100.0%",
    ]
    assert [label.get_text() for label in axes.get_yticklabels()] == ["ham", "spam"]
    assert "accuracy 87.50%" in axes.get_title() and "macro-F1 0.873" in axes.get_title()


def test_a_class_absent_from_the_data_has_an_empty_row_not_a_division_by_zero():
    shares = row_shares([[2, 2, 0], [0, 0, 0], [1, 0, 3]])
    np.testing.assert_allclose(shares, [[0.5, 0.5, 0], [0, 0, 0], [0.25, 0, 0.75]])


def test_confusion_matrix_of_a_report_from_gptlab_eval_json(tmp_path, viz):
    report, out = tmp_path / "report.json", tmp_path / "confusion.png"
    report.write_text(json.dumps({**REPORT, "data": "sms-spam (test split)", "loss": 0.3}))
    assert viz("confusion", report, "--out", out) == 0
    assert png_size(out) == (int(5.7 * DPI), int(4.5 * DPI))


@pytest.mark.parametrize("source", [[], ["--split", "val"], ["--data", "messages.csv"]])
def test_confusion_matrix_of_a_run_evaluates_a_split_or_a_labelled_file(
    classifier_run, tmp_path, viz, source
):
    out = tmp_path / "confusion.png"
    data = [str(classifier_run.parent / a) if a.endswith(".csv") else a for a in source]
    assert viz("confusion", classifier_run, *data, "--out", out) == 0
    assert png_size(out) == (int(5.7 * DPI), int(4.5 * DPI))


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["confusion", "{tmp}/report.json"], "no report at"),
        (["confusion", "{run}"], "is a language model, not a classifier"),
        (["attention", "{run}", "--prompt", "ROMEO", "--layer", "5"], "--layer must be in 0..1"),
        (["attention", "{run}", "--prompt", "€"], "€"),
        (["curves", "{tmp}"], "no metrics.jsonl"),
        (["positions", "{tmp}"], "neither a gptlab run directory nor a Hugging Face"),
        (["embeddings", "{run}", "--out", "{tmp}/map.jpg"], "PNG"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(run_dir, tmp_path, viz, capsys, args, fragment):
    assert viz(*(a.format(run=run_dir, tmp=tmp_path) for a in args)) == 2
    message = capsys.readouterr().err.strip()
    assert fragment in message and message.count("\n") == 0


def test_a_gpt2_vocabulary_maps_the_default_word_groups(gpt2_tokenizer_dir, tmp_path):
    from gptlab.tokenizers.gpt2 import GPT2Tokenizer
    from gptlab.viz import plot_embeddings
    from gptlab.viz.embeddings import DEFAULT_WORDS, embedding_points

    tokenizer = GPT2Tokenizer.from_files(
        gpt2_tokenizer_dir / "vocab.json", gpt2_tokenizer_dir / "merges.txt"
    )
    model = GPT(GPTConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size, n_embd=8, n_head=2))
    labels, groups, vectors = embedding_points(model, tokenizer)
    assert labels == [word for group in DEFAULT_WORDS.values() for word in group]
    assert set(groups) == set(DEFAULT_WORDS) and vectors.shape == (len(labels), 8)
    out = plot_embeddings(model, tokenizer, tmp_path / "words.png")
    assert png_size(out) == (10 * DPI, 8 * DPI)
