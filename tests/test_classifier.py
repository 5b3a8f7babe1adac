"""GPTClassifier: what its head reads, freezing policies, and parity with transformers'
GPT2ForSequenceClassification, in and out."""

from __future__ import annotations

import pytest
import torch

from gptlab.config import ClassifierConfig, GPTConfig
from gptlab.errors import CheckpointError, ConfigError
from gptlab.models.classifier import GPTClassifier
from gptlab.models.gpt import GPT
from gptlab.pretrained import export_hf, load_model
from gptlab.tokenizers import CharTokenizer
from gptlab.training.freezing import freeze

transformers = pytest.importorskip("transformers")

TINY = GPTConfig.from_preset("tiny", vocab_size=50257, context_length=32)


def classifier(pooling="last", side="right", labels=("ham", "spam", "eggs"), seed=0):
    torch.manual_seed(seed)
    head = ClassifierConfig(labels=list(labels), pooling=pooling, padding_side=side, pad_id=50256)
    return GPTClassifier(GPT(TINY), head).eval()


def padded(rows, side, pad=50256):
    T = max(len(r) for r in rows)
    idx = torch.full((len(rows), T), pad)
    mask = torch.zeros(len(rows), T, dtype=torch.bool)
    for i, r in enumerate(rows):
        span = slice(0, len(r)) if side == "right" else slice(T - len(r), T)
        idx[i, span], mask[i, span] = torch.tensor(r), True
    return idx, mask


ROWS = [[15496, 995, 11, 314], [40, 588], [464, 3797, 3332, 319, 262, 2603, 13]]


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_padding_does_not_change_a_rows_logits(side, pooling):
    model = classifier(pooling, side)
    idx, mask = padded(ROWS, side)
    batched, _ = model(idx, mask)
    for i, row in enumerate(ROWS):
        alone, _ = model(torch.tensor([row]))
        torch.testing.assert_close(batched[i], alone[0], atol=1e-5, rtol=1e-5)


def test_the_head_reads_the_last_real_token():
    model = classifier()
    idx, mask = padded(ROWS, "right")
    hidden = model.transformer.hidden_states(idx)
    expected = model.score(torch.stack([hidden[i, len(r) - 1] for i, r in enumerate(ROWS)]))
    torch.testing.assert_close(model(idx, mask)[0], expected)


def test_loss_is_cross_entropy_over_classes_and_trains_the_head():
    model = classifier().train()
    idx, mask = padded(ROWS, "right")
    targets = torch.tensor([0, 2, 1])
    logits, loss = model(idx, mask, targets)
    expected = torch.nn.functional.cross_entropy(model(idx, mask)[0], targets)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert model.score.weight.grad is not None and not logits.requires_grad


@pytest.mark.parametrize(
    "policy, trained",
    [
        ("head", {"score"}),
        ("last-block", {"score", "transformer.h.1", "transformer.ln_f"}),
        ("last-2", {"score", "transformer.h.0", "transformer.h.1", "transformer.ln_f"}),
    ],
)
def test_freezing_policies_train_what_they_name(policy, trained):
    model = classifier()
    trainable, total = freeze(model, policy)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all(any(n.startswith(t) for t in trained) for n in names)
    assert all(
        any(n.startswith(t) for t in trained) == p.requires_grad
        for n, p in model.named_parameters()
    )
    assert trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert total == model.num_params()


def test_all_trains_everything_and_the_embedding_once():
    model = classifier()
    trainable, total = freeze(model, "all")
    assert trainable == total == sum(p.numel() for p in model.parameters())
    assert model.num_params() == GPT(TINY).num_params() + 3 * TINY.n_embd


@pytest.mark.parametrize("policy", ["last-3", "last-0", "first-block", "everything"])
def test_an_impossible_policy_is_a_config_error(policy):
    with pytest.raises(ConfigError):
        freeze(classifier(), policy)


def test_a_classifier_needs_two_distinct_classes():
    with pytest.raises(ConfigError):
        ClassifierConfig(labels=["only"])
    with pytest.raises(ConfigError):
        ClassifierConfig(labels=["a", "a"])


# -- transformers ---------------------------------------------------------------------------


def hf_classifier(num_labels=3, seed=0):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        vocab_size=50257,
        n_positions=32,
        n_layer=2,
        n_head=2,
        n_embd=32,
        num_labels=num_labels,
        pad_token_id=50256,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    return transformers.GPT2ForSequenceClassification(config).eval()


def test_a_transformers_classifier_folder_loads_with_equal_logits(tmp_path):
    hf = hf_classifier()
    hf.save_pretrained(tmp_path / "hf")
    model, _, info = load_model(tmp_path / "hf", task="classify")
    assert info["task"] == "classify" and model.head.labels == ["LABEL_0", "LABEL_1", "LABEL_2"]
    idx, mask = padded(ROWS, "right")
    with torch.no_grad():
        expected = hf(input_ids=idx, attention_mask=mask.long()).logits
        logits, _ = model(idx, mask)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def test_export_writes_what_gpt2_for_sequence_classification_loads(tmp_path, gpt2_tokenizer_dir):
    from gptlab.tokenizers import GPT2Tokenizer

    model = classifier(labels=("neg", "pos"))
    export_hf(model, GPT2Tokenizer.from_pretrained(str(gpt2_tokenizer_dir)), tmp_path / "out")
    hf = transformers.GPT2ForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    assert hf.config.id2label == {0: "neg", 1: "pos"} and hf.config.pad_token_id == 50256
    idx, mask = padded(ROWS, "right")
    with torch.no_grad():
        expected = hf(input_ids=idx, attention_mask=mask.long()).logits
        logits, _ = model(idx, mask)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def test_export_and_import_give_back_the_same_classifier(tmp_path):
    model = classifier()
    tokenizer = CharTokenizer.from_text("abc")
    export_hf(model, tokenizer, tmp_path / "out")
    again, _, _ = load_model(tmp_path / "out")
    assert again.head.labels == model.head.labels
    for (name, a), (_, b) in zip(
        model.state_dict().items(), again.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name)


def test_a_mean_pooling_classifier_does_not_export(tmp_path):
    with pytest.raises(CheckpointError, match="last token"):
        export_hf(classifier("mean"), CharTokenizer.from_text("abc"), tmp_path / "out")
