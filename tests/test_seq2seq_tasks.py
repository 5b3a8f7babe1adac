"""The toy tasks, the symbol tokenizer, seq2seq batches, and the inverse-square-root schedule."""

from __future__ import annotations

import pytest
import torch

from gptlab.data.toy_seq2seq import ToyTask, is_held_out
from gptlab.errors import ConfigError, TokenizerError
from gptlab.models.seq2seq import IGNORE_INDEX
from gptlab.tasks.seq2seq import PairBatches, ToyBatches, truncate
from gptlab.tokenizers import load_tokenizer
from gptlab.tokenizers.symbols import SymbolTokenizer
from gptlab.training.config import TrainConfig
from gptlab.training.optim import noam_schedule


@pytest.mark.parametrize(
    "name, rule",
    [
        ("copy", lambda s: s),
        ("reverse", lambda s: s[::-1]),
        ("sort", lambda s: "".join(sorted(s))),
        ("add", lambda s: str(sum(int(n) for n in s.split("+"))).zfill(4)),
    ],
)
def test_toy_targets_follow_their_rule(name, rule):
    for source, target in ToyTask(name).pairs("train", 50, seed=3):
        assert target == rule(source)


def test_toy_lengths_stay_within_the_task():
    lengths = {len(s) for s, _ in ToyTask("reverse", max_len=6).pairs("train", 300, seed=1)}
    assert lengths == set(range(1, 7))
    for source, target in ToyTask("add", digits=2).pairs("train", 100, seed=1):
        a, b = source.split("+")
        assert len(a) == len(b) == 2 and len(target) == 3  # fixed widths: digits line up


def test_canonical_source_pads_a_typed_sum_and_drops_spaces():
    assert ToyTask("add").canonical_source("314 + 27") == "314+027"
    assert ToyTask("add").canonical_source("1+2+3") == "1+2+3"  # not a sum of two: left alone
    assert ToyTask("reverse").canonical_source("3 1 4") == "314"


def test_held_out_sources_never_appear_in_training_and_always_in_evaluation():
    task = ToyTask("copy", max_len=8)
    train = task.pairs("train", 2000, seed=0)
    assert not any(is_held_out(s) for s, _ in train)
    assert all(is_held_out(s) for s, _ in task.pairs("test", 200, seed=0))
    assert all(is_held_out(s) for s, _ in task.pairs("val", 200, seed=0))


def test_draws_are_a_function_of_seed_split_and_step():
    task = ToyTask("sort")
    assert task.pairs("train", 20, 1, step=5) == task.pairs("train", 20, 1, step=5)
    assert task.pairs("train", 20, 1, step=5) != task.pairs("train", 20, 1, step=6)
    assert task.pairs("val", 20, 1) != task.pairs("test", 20, 1)


def test_unknown_task_and_split_are_config_errors():
    with pytest.raises(ConfigError):
        ToyTask("multiply")
    with pytest.raises(ConfigError):
        ToyTask("copy").pairs("dev", 1, 0)


def test_symbol_tokenizer_round_trips_and_saves(tmp_path):
    tokenizer = SymbolTokenizer("0123456789+")
    ids = tokenizer.encode("31 4+2")
    assert ids[0] == 3 + 3 and tokenizer.vocab_size == 14
    assert (
        tokenizer.decode([tokenizer.bos_id, *ids, tokenizer.eos_id], skip_special_tokens=True)
        == "314+2"
    )
    assert tokenizer.decode([tokenizer.eos_id]) == "<eos>"
    tokenizer.save(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert loaded.encode("99+1") == tokenizer.encode("99+1")
    assert loaded.fingerprint() == tokenizer.fingerprint()
    with pytest.raises(TokenizerError, match="'x'"):
        tokenizer.encode("12x")


def test_toy_batches_are_shifted_targets_with_eos_and_ignored_padding():
    tokenizer = SymbolTokenizer("0123456789+")
    batches = ToyBatches(ToyTask("reverse", max_len=5), tokenizer, 8, seed=1, device="cpu")
    src, tgt_in, targets = batches.train_batch(0, 0)
    pairs = ToyTask("reverse", max_len=5).pairs("train", 8, 1, 0, 0)
    for row, (source, target) in enumerate(pairs):
        n = len(target)
        assert src[row, : len(source) + 1].tolist() == tokenizer.encode(source) + [2]
        assert tgt_in[row, 0] == tokenizer.bos_id
        assert tgt_in[row, 1 : n + 1].tolist() == tokenizer.encode(target)
        assert targets[row, : n + 1].tolist() == tokenizer.encode(target) + [2]
        assert (targets[row, n + 1 :] == IGNORE_INDEX).all()
    assert torch.equal(batches.train_batch(0, 0)[0], src)  # the same step, the same batch


def test_noam_schedule_warms_up_linearly_then_decays_as_inverse_square_root():
    lrs = [noam_schedule(step, 1e-3, warmup=100) for step in range(400)]
    assert lrs[0] == pytest.approx(1e-5)
    assert max(lrs) == pytest.approx(1e-3) and lrs.index(max(lrs)) == 99
    assert lrs[399] == pytest.approx(1e-3 * (100 / 400) ** 0.5)  # sqrt(warmup / step)
    with pytest.raises(ConfigError):
        TrainConfig(schedule="linear")


def test_pair_batches_cover_each_epoch_once_in_a_seeded_order():
    tokenizer = SymbolTokenizer("0123456789+")
    sources = [[3 + i % 10, tokenizer.eos_id] for i in range(10)]
    targets = [[3 + i % 10, 4, tokenizer.eos_id] for i in range(10)]
    batches = PairBatches(sources, targets, tokenizer, tokenizer.pad_id, 4, seed=7, device="cpu")
    assert batches.per_epoch == 3 and batches.steps_for(2) == 6
    epoch = [batches.train_batch(step, 0)[0][:, 0].tolist() for step in range(3)]
    assert sorted(sum(epoch, [])) == sorted(row[0] for row in sources)  # every pair once
    again = PairBatches(sources, targets, tokenizer, tokenizer.pad_id, 4, seed=7, device="cpu")
    assert again.train_batch(4, 0)[0].tolist() == batches.train_batch(4, 0)[0].tolist()
    assert batches.train_batch(3, 0)[0].tolist() != batches.train_batch(0, 0)[0].tolist()


def test_truncate_keeps_the_final_eos():
    assert truncate([[5, 6, 7, 8, 2], [5, 2]], 3) == [[5, 6, 2], [5, 2]]
