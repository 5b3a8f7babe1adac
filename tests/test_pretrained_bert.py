"""gptlab's masked-language model against transformers' BertForMaskedLM: an exported run loads
in transformers with equal logits, and a BERT folder imports with equal logits (float32,
padding and token types included)."""

from __future__ import annotations

import json

import pytest
import torch

from gptlab.cli import main
from gptlab.config import EncoderConfig
from gptlab.models.encoder import MaskedLM
from gptlab.pretrained import load_model
from gptlab.pretrained_bert import export_bert
from gptlab.tokenizers import CharTokenizer, with_mask_token

transformers = pytest.importorskip("transformers")

TEXT = "to be or not to be, that is the question"


def tokenizer():
    return with_mask_token(CharTokenizer.from_text(TEXT))


def inputs(vocab_size: int):
    gen = torch.Generator().manual_seed(3)
    idx = torch.randint(0, vocab_size, (2, 10), generator=gen)
    types = torch.randint(0, 2, (2, 10), generator=gen)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 7:] = False  # the second row is 7 tokens and padding
    return idx, types, mask


def randomize_(model: torch.nn.Module) -> None:
    """Non-trivial values everywhere (norm scales, biases), so a misplaced tensor shows."""
    torch.manual_seed(5)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "norm" in name or "ln" in name:
                p.normal_(1.0 if name.endswith("weight") else 0.0, 0.2)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.1)


def assert_same_logits(ours: MaskedLM, theirs, vocab_size: int) -> None:
    idx, types, mask = inputs(vocab_size)
    with torch.no_grad():
        got = ours(idx, padding_mask=mask, token_type_ids=types)[0]
        want = theirs(input_ids=idx, token_type_ids=types, attention_mask=mask.long()).logits
    torch.testing.assert_close(got[mask], want[mask], rtol=0, atol=1e-5)


@pytest.mark.parametrize("gelu", ["none", "tanh"])
def test_exported_run_loads_in_bert_for_masked_lm_with_equal_logits(tmp_path, gelu):
    tok = tokenizer()
    config = EncoderConfig(
        vocab_size=tok.vocab_size, context_length=16, n_layer=2, n_head=2, n_embd=16,
        dropout=0.0, gelu=gelu, mask_id=tok.mask_id,
    )  # fmt: skip
    torch.manual_seed(0)
    ours = MaskedLM(config).eval()
    randomize_(ours)
    export_bert(ours, tok, tmp_path)
    theirs = transformers.BertForMaskedLM.from_pretrained(tmp_path).eval()
    assert_same_logits(ours, theirs, tok.vocab_size)


def test_bert_folder_imports_with_equal_logits(tmp_path):
    tok = tokenizer()
    hf_config = transformers.BertConfig(
        vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=16, type_vocab_size=2,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(1)
    theirs = transformers.BertForMaskedLM(hf_config).eval()
    randomize_(theirs)
    theirs.save_pretrained(tmp_path / "bert")
    tok.save(tmp_path / "bert")
    ours, _, info = load_model(tmp_path / "bert", task="mlm")
    assert info["task"] == "mlm" and ours.config.layer_norm_eps == 1e-12
    assert ours.config.mask_id == tok.mask_id
    assert_same_logits(ours, theirs, tok.vocab_size)

    # and through the command line: import, then fill a mask from the run
    assert main(["import", str(tmp_path / "bert"), "--out", str(tmp_path / "run")]) == 0
    again, _, _ = load_model(tmp_path / "run", task="mlm")
    assert_same_logits(again, theirs, tok.vocab_size)
    assert main(["fill-mask", str(tmp_path / "run"), "to [MASK]e", "--top-k", "2"]) == 0


def test_bert_folder_without_a_gptlab_tokenizer_is_a_clear_error(tmp_path, capsys):
    hf_config = transformers.BertConfig(
        vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=8,
    )  # fmt: skip
    transformers.BertForMaskedLM(hf_config).save_pretrained(tmp_path)
    assert main(["fill-mask", str(tmp_path), "[MASK]"]) == 2
    assert "WordPiece" in capsys.readouterr().err


def test_encoder_without_biases_does_not_export(tmp_path, capsys):
    tok = tokenizer()
    config = EncoderConfig(
        vocab_size=tok.vocab_size, context_length=8, n_layer=1, n_head=2, n_embd=8,
        bias=False, mask_id=tok.mask_id,
    )  # fmt: skip
    from gptlab.errors import CheckpointError

    with pytest.raises(CheckpointError, match="biases"):
        export_bert(MaskedLM(config), tok, tmp_path)


# -- encoder classifiers as BertForSequenceClassification ---------------------------------------


def tiny_classifier(tok, pooling="first", pooler=True):
    from gptlab.config import ClassifierConfig
    from gptlab.models.classifier import EncoderClassifier
    from gptlab.models.encoder import Encoder

    config = EncoderConfig(
        vocab_size=tok.vocab_size, context_length=16, n_layer=2, n_head=2, n_embd=16,
        dropout=0.0, mask_id=tok.mask_id,
    )  # fmt: skip
    head = ClassifierConfig(["ham", "spam", "eggs"], pooling=pooling, pooler=pooler)
    torch.manual_seed(0)
    model = EncoderClassifier(Encoder(config), head).eval()
    randomize_(model)
    if pooler:  # it starts as the identity, which would hide a transposed weight
        torch.nn.init.normal_(model.pooler.weight, std=0.3)
    return model


def test_encoder_classifier_exports_to_bert_for_sequence_classification(tmp_path):
    tok = tokenizer()
    ours = tiny_classifier(tok)
    export_bert(ours, tok, tmp_path)
    theirs = transformers.BertForSequenceClassification.from_pretrained(tmp_path).eval()
    assert theirs.config.id2label == {0: "ham", 1: "spam", 2: "eggs"}
    idx, _, mask = inputs(tok.vocab_size)
    with torch.no_grad():
        got = ours(idx, mask)[0]  # (B, K)
        want = theirs(input_ids=idx, attention_mask=mask.long()).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    from gptlab.errors import CheckpointError

    with pytest.raises(CheckpointError, match="imports BertForMaskedLM folders"):
        load_model(tmp_path, task="any")  # one way: gptlab's classifier is made by finetune


@pytest.mark.parametrize(
    "pooling, pooler, reason",
    [("mean", False, "cannot carry a mean"), ("first", False, "--pooler")],
)
def test_classifiers_bert_cannot_hold_are_refused_with_the_reason(
    tmp_path, pooling, pooler, reason
):
    from gptlab.errors import CheckpointError

    tok = tokenizer()
    with pytest.raises(CheckpointError, match=reason):
        export_bert(tiny_classifier(tok, pooling, pooler), tok, tmp_path)
    assert not (tmp_path / "model.safetensors").exists()


# -- BERT's WordPiece tokenizer ------------------------------------------------------------------

LINES = [
    "The quick brown fox jumps over the lazy dog.",
    "The king of Denmark, and his queen!",
    "To be, or not to be: that is the question.",
    "Hello world, hello there, general Kenobi.",
]
SENTENCES = ["The king of Denmark.", "Hello, lazy fox!", "Zebras play the xylophone?", "to be OK"]


def bert_folder(tmp_path, holds: str):
    """A tiny BertForMaskedLM folder whose tokenizer is a WordPiece trained here: saved by
    transformers' BertTokenizerFast, as `tokenizers`' own tokenizer.json, or as vocab.txt."""
    from tokenizers.implementations import BertWordPieceTokenizer

    trained = BertWordPieceTokenizer(lowercase=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trained.train_from_iterator(LINES * 3, vocab_size=90, min_frequency=1, special_tokens=specials)
    trained.save(str(tmp_path / "trained.json"))
    reference = transformers.BertTokenizerFast(tokenizer_file=str(tmp_path / "trained.json"))
    folder = tmp_path / holds
    if holds == "transformers":
        reference.save_pretrained(folder)
    elif holds == "tokenizers":
        folder.mkdir()
        trained.save(str(folder / "tokenizer.json"))
    else:
        folder.mkdir()
        trained.save_model(str(folder))  # vocab.txt
    hf_config = transformers.BertConfig(
        vocab_size=reference.vocab_size, hidden_size=16, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=32,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    torch.manual_seed(2)
    model = transformers.BertForMaskedLM(hf_config).eval()
    model.save_pretrained(folder)
    return folder, reference, model


@pytest.mark.parametrize("holds", ["transformers", "tokenizers", "vocab"])
def test_wordpiece_of_a_bert_folder_encodes_as_bert_tokenizer_fast(tmp_path, holds):
    folder, reference, theirs = bert_folder(tmp_path, holds)
    ours, tok, _ = load_model(folder, task="mlm")
    assert tok.kind == "wordpiece" and tok.vocab_size == reference.vocab_size
    for name in ("mask", "cls", "sep", "pad", "unk"):
        assert getattr(tok, f"{name}_id") == getattr(reference, f"{name}_token_id")
    for sentence in SENTENCES:
        ids = tok.encode(sentence)
        assert ids == reference(sentence)["input_ids"]  # [CLS] ... [SEP] included
        assert tok.decode(ids) == reference.decode(ids[1:-1])  # [UNK] kept, the framing not
    assert tok.encode_batch(SENTENCES) == reference(SENTENCES)["input_ids"]
    ids = tok.encode("the [MASK] of denmark")
    assert ids.count(tok.mask_id) == 1 and "[MASK]" in tok.decode(ids)
    with torch.no_grad():
        want = theirs(input_ids=torch.tensor([ids])).logits
        torch.testing.assert_close(ours(torch.tensor([ids]))[0], want, rtol=0, atol=1e-5)


def test_imported_wordpiece_bert_fills_masks_evaluates_classifies_and_exports(tmp_path, capsys):
    folder, reference, _ = bert_folder(tmp_path, "transformers")
    run = tmp_path / "run"
    assert main(["import", str(folder), "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["fill-mask", str(run), "The [MASK] of Denmark.", "--top-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all("of denmark." in line for line in lines)

    text = tmp_path / "held_out.txt"
    text.write_text(" ".join(LINES))
    assert main(["eval", str(run), "--data", str(text), "--json", "--device", "cpu"]) == 0
    assert 0.0 <= json.loads(capsys.readouterr().out)["accuracy"] <= 1.0

    labelled = tmp_path / "labels.csv"
    labelled.write_text(
        "text,label\n" + "".join(f"{line},{i % 2}\n" for i, line in enumerate(LINES * 5))
    )
    tuned = tmp_path / "tuned"
    args = ["finetune", "classify", str(run), "--data", str(labelled), "--max-iters", "2"]
    assert main([*args, "--device", "cpu", "--no-tensorboard", "--out", str(tuned)]) == 0
    assert main(["classify", str(tuned), "Hello there"]) == 0

    assert main(["export", str(run), "--out", str(tmp_path / "again")]) == 0
    again = transformers.BertTokenizerFast.from_pretrained(tmp_path / "again")
    assert again(SENTENCES)["input_ids"] == reference(SENTENCES)["input_ids"]


def test_wordpiece_encodes_a_text_whole_even_when_its_file_says_truncate(tmp_path):
    import tokenizers

    from gptlab.tokenizers import WordPieceTokenizer, load_tokenizer

    folder, reference, _ = bert_folder(tmp_path, "transformers")
    backend = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    backend.enable_truncation(4)  # as some hub files do, at 512
    backend.save(str(folder / "tokenizer.json"))
    tok = WordPieceTokenizer.from_bert_folder(folder)
    text = " ".join(LINES)
    assert tok.encode(text) == reference(text)["input_ids"] and len(tok.encode(text)) > 4
    tok.save(tmp_path / "saved")
    assert load_tokenizer(tmp_path / "saved").encode(text) == tok.encode(text)
