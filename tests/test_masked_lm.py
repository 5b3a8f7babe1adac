"""The masked-language model: the masking collator's proportions, the mask token in the char and
GPT-2 tokenizers, the encoder's bidirectional and padding masks, and `gptlab train --objective
mlm` with `gptlab fill-mask` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gptlab.cli import main
from gptlab.config import EncoderConfig, GPTConfig
from gptlab.data.masking import mask_tokens
from gptlab.errors import ConfigError
from gptlab.models.encoder import IGNORE_INDEX, MaskedLM
from gptlab.tokenizers import (
    MASK_TOKEN,
    CharTokenizer,
    GPT2Tokenizer,
    load_tokenizer,
    with_mask_token,
)

# -- the collator ------------------------------------------------------------------------------


def test_masking_chooses_15_percent_and_splits_them_80_10_10():
    vocab, mask_id, eos = 1000, 998, 999
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 998, (64, 512), generator=gen)
    inputs, labels = mask_tokens(ids, mask_id, vocab, [eos], torch.Generator().manual_seed(1))
    chosen = labels != IGNORE_INDEX
    n = chosen.sum().item()
    assert n / ids.numel() == pytest.approx(0.15, abs=0.005)
    assert torch.equal(labels[chosen], ids[chosen])  # labels: the original ids
    assert torch.equal(inputs[~chosen], ids[~chosen])  # the rest untouched
    masked = (inputs == mask_id) & chosen
    kept = (inputs == ids) & chosen
    swapped = chosen & ~masked & ~kept
    assert masked.sum().item() / n == pytest.approx(0.8, abs=0.01)
    # a random draw can give the original id back (1 in 998): "kept" is a hair over 10%
    assert kept.sum().item() / n == pytest.approx(0.1, abs=0.01)
    assert swapped.sum().item() / n == pytest.approx(0.1, abs=0.01)
    assert not torch.isin(inputs[swapped], torch.tensor([mask_id, eos])).any()


def test_special_tokens_and_padding_are_never_masked():
    mask_id, eos = 8, 9
    ids = torch.tensor([[eos, 1, 2, 3, eos, 4, 5, 0, 0]] * 200)
    padding = torch.tensor([[True] * 7 + [False] * 2] * 200)
    inputs, labels = mask_tokens(
        ids, mask_id, 10, [eos], torch.Generator().manual_seed(0), padding_mask=padding
    )
    chosen = labels != IGNORE_INDEX
    assert chosen.any()
    assert not chosen[ids == eos].any() and not chosen[~padding].any()
    assert torch.equal(inputs[ids == eos], ids[ids == eos])


def test_masking_is_the_same_for_the_same_seed_and_always_masks_something():
    ids = torch.arange(4).repeat(1, 1)  # 4 tokens: at 15%, often none would be chosen
    for seed in range(20):
        a = mask_tokens(ids, 5, 6, (), torch.Generator().manual_seed(seed))
        b = mask_tokens(ids, 5, 6, (), torch.Generator().manual_seed(seed))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert (a[1] != IGNORE_INDEX).any()


# -- the mask token ----------------------------------------------------------------------------


def test_char_tokenizer_gets_a_mask_token_that_survives_saving(tmp_path):
    plain = CharTokenizer.from_text("to be or not")
    tokenizer = with_mask_token(plain)
    assert tokenizer.mask_id == plain.vocab_size and tokenizer.vocab_size == plain.vocab_size + 1
    ids = tokenizer.encode(f"to {MASK_TOKEN}e")
    assert ids == plain.encode("to ") + [tokenizer.mask_id] + plain.encode("e")
    assert tokenizer.decode(ids) == f"to {MASK_TOKEN}e"
    tokenizer.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert again.mask_id == tokenizer.mask_id and again.fingerprint() == tokenizer.fingerprint()
    assert plain.fingerprint() != tokenizer.fingerprint()
    assert with_mask_token(tokenizer) is tokenizer


def test_gpt2_tokenizer_gets_a_mask_token_after_its_vocabulary(gpt2_tokenizer_dir, tmp_path):
    plain = GPT2Tokenizer.from_pretrained(gpt2_tokenizer_dir)
    tokenizer = with_mask_token(plain)
    assert (tokenizer.mask_id, tokenizer.vocab_size) == (50257, 50258)
    assert tokenizer.special_ids == [50256, 50257]
    # [MASK] takes the space before it: it stands for " king", GPT-2's token with its space
    assert tokenizer.encode("The [MASK] of Denmark") == [464, 50257, 286, 16490]
    assert tokenizer.encode("The king") == plain.encode("The king")
    tokenizer.save(tmp_path)
    assert load_tokenizer(tmp_path).mask_id == 50257


# -- the encoder -------------------------------------------------------------------------------


def tiny_encoder(**changes) -> MaskedLM:
    torch.manual_seed(0)
    config = EncoderConfig(
        vocab_size=20, context_length=12, n_layer=2, n_head=2, n_embd=16, dropout=0.0, **changes
    )
    return MaskedLM(config).eval()


def test_encoder_attends_both_ways():
    model = tiny_encoder()
    idx = torch.randint(0, 20, (1, 8))
    changed = idx.clone()
    changed[0, -1] = (idx[0, -1] + 1) % 20  # a change at the end reaches the first position
    assert not torch.allclose(model(idx)[0][0, 0], model(changed)[0][0, 0])


def test_padding_mask_hides_padded_positions():
    model = tiny_encoder()
    idx = torch.randint(0, 20, (1, 8))
    padded = torch.cat([idx, torch.full((1, 4), 3)], dim=1)
    other = torch.cat([idx, torch.full((1, 4), 7)], dim=1)
    mask = torch.tensor([[True] * 8 + [False] * 4])
    a, b = model(padded, padding_mask=mask)[0], model(other, padding_mask=mask)[0]
    torch.testing.assert_close(a[:, :8], b[:, :8])
    torch.testing.assert_close(a[:, :8], model(idx)[0], atol=1e-5, rtol=1e-5)


def test_loss_counts_masked_positions_only_and_decoder_is_tied():
    model = tiny_encoder()
    assert model.lm_head.weight is model.encoder.wte.weight
    idx = torch.randint(0, 20, (2, 6))
    targets = torch.full_like(idx, IGNORE_INDEX)
    targets[0, 2], targets[1, 4] = 5, 9
    logits, loss = model(idx, targets)
    assert logits.shape == (2, 20)  # the masked positions' only
    full = model(idx)[0]  # (B, T, V)
    torch.testing.assert_close(logits, full[[0, 1], [2, 4]])
    expected = torch.nn.functional.cross_entropy(full[[0, 1], [2, 4]], torch.tensor([5, 9]))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_encoder_config_from_a_gpt_shape():
    shape = GPTConfig.from_preset("tiny")
    config = EncoderConfig.from_gpt(shape, mask_id=3)
    assert (config.n_layer, config.n_embd, config.context_length) == (2, 32, 32)
    with pytest.raises(ConfigError, match="learn"):
        EncoderConfig.from_gpt(GPTConfig.from_preset("tiny", positions="sinusoidal"))
    with pytest.raises(ConfigError, match="mask_id"):
        EncoderConfig(vocab_size=4, mask_id=4)


# -- the commands ------------------------------------------------------------------------------

TINY = [
    "--objective", "mlm", "--preset", "tiny", "--n-layer", "1", "--n-embd", "16",
    "--context-length", "16", "--batch-size", "4", "--max-iters", "8", "--eval-interval", "4",
    "--eval-iters", "2", "--log-interval", "2", "--device", "cpu", "--no-tensorboard",
]  # fmt: skip


@pytest.fixture(scope="module")
def mlm_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlm")
    corpus = root / "corpus.txt"
    corpus.write_text("".join(f"line {i}: the quick brown fox jumps {i % 7}\n" for i in range(300)))
    assert main(["train", *TINY, "--data", str(corpus), "--out", str(root / "mlm")]) == 0
    return root / "mlm"


def test_train_mlm_writes_an_encoder_run_with_masked_accuracy(mlm_run):
    config = json.loads((mlm_run / "config.json").read_text())
    characters = len(set((mlm_run.parent / "corpus.txt").read_text()))
    assert config["task"] == "mlm" and config["model"]["mask_id"] == characters  # the next id
    evals = [
        json.loads(line)
        for line in (mlm_run / "metrics.jsonl").read_text().splitlines()
        if '"val"' in line
    ]
    assert evals and all(0.0 <= m["accuracy"] <= 1.0 for m in evals)
    assert load_tokenizer(mlm_run / "tokenizer").mask_id == characters


def test_fill_mask_prints_top_k_fillers_with_probabilities(mlm_run, capsys):
    assert main(["fill-mask", str(mlm_run), "the quick br[MASK]wn", "--top-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    probabilities = [float(line.split("%")[0]) for line in lines]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 100
    assert main(["fill-mask", str(mlm_run), "[MASK] quick [MASK]", "--top-k", "2"]) == 0
    assert capsys.readouterr().out.count("[MASK]") == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["{run}", "the quick fox"], "no [MASK]"),
        (["{run}", "[MASK]" * 40], "longer than the model's context"),
        (["{run}", "[MASK]", "--top-k", "0"], "--top-k"),
        (["{run}", "[MASK] é"], "not in this tokenizer"),
    ],
)
def test_fill_mask_bad_input_is_one_line_and_exit_2(mlm_run, capsys, args, message):
    assert main(["fill-mask", *[a.replace("{run}", str(mlm_run)) for a in args]]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_gpt_commands_refuse_an_encoder_run(mlm_run, capsys):
    assert main(["sample", str(mlm_run), "--prompt", "a"]) == 2
    assert "gptlab fill-mask" in capsys.readouterr().err
    assert main(["train", "--resume", str(mlm_run), "--max-iters", "10"]) == 0  # resumes as mlm


def test_finetune_classify_takes_an_encoder_run(mlm_run, tmp_path, capsys):
    labelled = tmp_path / "labels.csv"
    rows = [
        f"the quick brown fox {i % 7},fox" if i % 2 else "line 3: the fox,line" for i in range(40)
    ]
    labelled.write_text("text,label\n" + "\n".join(rows) + "\n")
    out = tmp_path / "cls"
    args = ["finetune", "classify", str(mlm_run), "--data", str(labelled), "--out", str(out)]
    assert main([*args, "--train", "all", "--max-iters", "3", "--device", "cpu", "--no-tensorboard"]) == 0  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert config["body"] == "encoder" and config["classifier"]["pooling"] == "first"
    assert config["classifier"]["pooler"]  # BERT's, by default: the run exports
    capsys.readouterr()
    assert main(["classify", str(out), "the quick brown fox 3"]) == 0
    assert capsys.readouterr().out.split()[0] in ("fox", "line")
    assert main(["export", str(out), "--out", str(tmp_path / "hf")]) == 0
    assert "BertForSequenceClassification.from_pretrained" in capsys.readouterr().out
    exported = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert exported["architectures"] == ["BertForSequenceClassification"]
    assert main([*args, "--pooling", "mean", "--pooler", "--out", str(tmp_path / "y")]) == 2
    assert "--pooler is BERT's" in capsys.readouterr().err
    args = ["finetune", "classify", str(mlm_run), "--data", str(labelled), "--lora"]
    assert main([*args, "--out", str(tmp_path / "x")]) == 2
    assert "adapters attach to GPT bodies" in capsys.readouterr().err


# -- gptlab eval on an encoder -----------------------------------------------------------------


def test_eval_masked_accuracy_equals_the_argmax_at_the_masked_positions(mlm_run, tmp_path, capsys):
    from gptlab.pretrained import load_model
    from gptlab.tasks.masked_lm import masked_batch

    model, tok, _ = load_model(mlm_run, task="mlm")
    # Three windows of the context (16), one batch; mostly "r", which the tiny model often
    # predicts, so the accuracy is neither 0 nor 1 and depends on which tokens were masked.
    ids = tok.encode("brrr" * 12)
    corpus = tmp_path / "held_out.txt"
    corpus.write_text(tok.decode(ids))
    args = ["eval", str(mlm_run), "--data", str(corpus), "--batch-size", "4", "--mask-seed", "3"]
    assert main([*args, "--json", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)

    # by hand: the same windows, masked from the same seed; the model's logits everywhere
    inputs, labels = masked_batch(torch.tensor(ids).view(3, 16), tok, 3)
    with torch.no_grad():
        logits = model(inputs)[0]  # (3, 16, V)
    chosen = labels != IGNORE_INDEX
    expected = int((logits[chosen].argmax(-1) == labels[chosen]).sum()) / int(chosen.sum())
    loss = torch.nn.functional.cross_entropy(logits[chosen], labels[chosen]).item()
    assert 0.0 < result["accuracy"] < 1.0 and result["masked"] == int(chosen.sum())
    assert result["accuracy"] == pytest.approx(expected, abs=1e-12)
    assert result["loss"] == pytest.approx(loss, rel=1e-5)
    assert result["perplexity"] == pytest.approx(np.exp(loss), rel=1e-5)
    assert result["tokens"] == 48

    assert main([*args, "--json", "--device", "cpu"]) == 0  # the same seed: the same figures
    assert json.loads(capsys.readouterr().out) == result


def test_eval_prints_masked_metrics_on_the_validation_split(mlm_run, capsys):
    assert main(["eval", str(mlm_run), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "(validation split): masked loss" in out and "accuracy" in out and "mask seed 0" in out
    assert main(["eval", str(mlm_run), "--split", "test"]) == 2
    assert "train and val only" in capsys.readouterr().err
