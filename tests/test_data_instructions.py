"""Instruction data: the Alpaca prompt, reading alpaca and chat files, the reference split,
masked targets, truncation, bucketed batches, and one masked step against transformers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import shared_file
from test_gpt import hf_twin, random_gpt
from torch.testing import assert_close

from gptlab.config import GPTConfig
from gptlab.data.instructions import (
    Instruction,
    InstructionBatches,
    alpaca_prompt,
    bucketed_batches,
    encode_instruction,
    encode_instructions,
    load_instructions,
    pad_instructions,
    padding_report,
    split_instructions,
)
from gptlab.errors import DataError
from gptlab.models.gpt import IGNORE_INDEX
from gptlab.pretrained import state_dict_to_hf
from gptlab.tokenizers import GPT2Tokenizer

ENTRY = Instruction("Convert 45 kilometers to meters.", "", "45 kilometers is 45000 meters.")
WITH_INPUT = Instruction("Edit the following sentence for grammar.", "He go.", "He goes.")


@pytest.fixture(scope="module")
def tokenizer() -> GPT2Tokenizer:
    return GPT2Tokenizer.from_pretrained(str(shared_file("gpt2-tokenizer", "vocab.json").parent))


def write_json(path: Path, value) -> Path:
    path.write_text(json.dumps(value))
    return path


def test_alpaca_prompt_is_the_reference_text():
    preamble = (
        "Below is an instruction that describes a task. "
        "Write a response that appropriately completes the request."
    )
    assert alpaca_prompt(ENTRY) == (
        f"{preamble}\n\n### Instruction:\nConvert 45 kilometers to meters.\n\n### Response:\n"
    )
    assert alpaca_prompt(WITH_INPUT) == (
        f"{preamble}\n\n### Instruction:\nEdit the following sentence for grammar."
        "\n\n### Input:\nHe go.\n\n### Response:\n"
    )


def test_reference_split_keeps_file_order_935_110_55():
    entries = load_instructions(shared_file("instruction-data", "instruction-data.json"))
    splits = split_instructions(entries)
    assert {name: len(part) for name, part in splits.items()} == {
        "train": 935,
        "val": 55,
        "test": 110,
    }
    assert splits["train"][0] == entries[0]
    assert splits["test"][0] == entries[935] and splits["val"][0] == entries[1045]


def test_jsonl_and_chat_files_read_as_instructions(tmp_path):
    alpaca = tmp_path / "tasks.jsonl"
    alpaca.write_text(json.dumps({"instruction": "Say hi.", "output": "Hi."}) + "\n\n")
    assert load_instructions(alpaca) == [Instruction("Say hi.", "", "Hi.")]
    system = {"role": "system", "content": "Edit the following sentence for grammar."}
    user, assistant = (
        {"role": "user", "content": "He go."},
        {"role": "assistant", "content": "He goes."},
    )
    chat = write_json(
        tmp_path / "chat.json",
        [{"messages": [system, user, assistant]}, {"messages": [user, assistant]}],
    )
    assert load_instructions(chat, "chat") == [WITH_INPUT, Instruction("He go.", "", "He goes.")]


@pytest.mark.parametrize(
    "content, format, message",
    [
        ([{"instruction": "Say hi."}], "alpaca", "entry 1: missing 'output'"),
        ([], "alpaca", "has no entries"),
        ({"instruction": "x", "output": "y"}, "alpaca", "expected a JSON list"),
        ([{"messages": [{"role": "user", "content": "hi"}] * 2}], "chat", "only one exchange"),
    ],
    ids=["missing-field", "empty", "not-a-list", "two-user-turns"],
)
def test_bad_files_are_one_data_error(tmp_path, content, format, message):
    path = write_json(tmp_path / "bad.json", content)
    with pytest.raises(DataError, match=message):
        load_instructions(path, format)


def test_only_response_and_end_of_text_are_targets(tokenizer):
    ids, prompt_length = encode_instruction(WITH_INPUT, tokenizer)
    encoded = encode_instructions([WITH_INPUT], tokenizer, context_length=1024)
    inputs, targets = encoded.inputs[0], encoded.targets[0]
    assert inputs == ids[:-1] and len(targets) == len(inputs)
    assert targets[: prompt_length - 1] == [IGNORE_INDEX] * (prompt_length - 1)
    assert targets[prompt_length - 1 :] == tokenizer.encode("He goes.") + [tokenizer.eos_id]
    assert tokenizer.decode(ids[:prompt_length]) == alpaca_prompt(WITH_INPUT)


def test_train_on_prompt_leaves_only_padding_ignored(tokenizer):
    encoded = encode_instructions([WITH_INPUT, ENTRY], tokenizer, 1024, train_on_prompt=True)
    _, targets = pad_instructions(encoded.inputs, encoded.targets, pad_id=tokenizer.eos_id)
    for row, expected in zip(targets.tolist(), encoded.targets, strict=True):
        assert row[: len(expected)] == expected and IGNORE_INDEX not in expected
        assert row[len(expected) :] == [IGNORE_INDEX] * (len(row) - len(expected))


def test_truncation_and_dropped_examples_are_counted(tokenizer):
    ids, prompt_length = encode_instruction(ENTRY, tokenizer)
    # ENTRY keeps its prompt and two response tokens; WITH_INPUT's longer prompt fills the
    # context, so nothing of its response is left to learn.
    encoded = encode_instructions([ENTRY, WITH_INPUT], tokenizer, context_length=prompt_length + 1)
    assert (encoded.truncated, encoded.dropped, len(encoded)) == (2, 1, 1)
    assert encoded.lengths == [prompt_length + 1]
    assert encoded.targets[0][-2:] == ids[prompt_length : prompt_length + 2]


def test_bucketing_saves_padding_on_the_reference_data(tokenizer):
    entries = load_instructions(shared_file("instruction-data", "instruction-data.json"))[:400]
    lengths = encode_instructions(entries, tokenizer, 1024).lengths
    report = padding_report(lengths, batch_size=8)
    assert report["bucketed"] < report["random_batches"] / 3
    assert report["random_batches"] < report["pad_to_longest"]
    assert report["saved"] == report["pad_to_longest"] - report["bucketed"] > 0


def test_bucketed_epoch_covers_each_example_at_most_once_in_full_batches():
    lengths = [5, 1, 9, 3, 3, 7, 2, 8, 6, 4, 10]
    batches = bucketed_batches(lengths, batch_size=3, seed=1, epoch=0)
    seen = [int(i) for batch in batches for i in batch]
    assert len(batches) == 3 and all(len(batch) == 3 for batch in batches)
    assert len(set(seen)) == 9
    assert [list(b) for b in batches] != [
        list(b) for b in bucketed_batches(lengths, 3, seed=1, epoch=1)
    ]


def test_train_batches_are_a_function_of_step_and_index(tokenizer):
    entries = [Instruction(f"Count to {n}.", "", " ".join(["one"] * n)) for n in range(1, 13)]
    encoded = encode_instructions(entries, tokenizer, 1024)
    a = InstructionBatches(encoded, 2, tokenizer.eos_id, seed=7, micro_batches_per_step=2)
    b = InstructionBatches(encoded, 2, tokenizer.eos_id, seed=7, micro_batches_per_step=2)
    for step, index in [(4, 1), (0, 0), (9, 0), (4, 1)]:  # any order, across epochs
        for x, y in zip(a.train_batch(step, index), b.train_batch(step, index), strict=True):
            assert torch.equal(x, y)
    assert not torch.equal(a.train_batch(0, 0)[0], a.train_batch(0, 1)[0])


def test_masked_step_matches_transformers_loss_and_gradients(tokenizer):
    """gptlab takes shifted targets; transformers takes labels aligned with the input and shifts
    them itself: both come from the same padded ids with -100 on the prompt and the padding."""
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size, context_length=96, n_layer=2, n_head=2, n_embd=16
    )
    model = random_gpt(config).train()
    hf = hf_twin(model, "eager").train()
    encoded = encode_instructions([WITH_INPUT, ENTRY], tokenizer, config.context_length)
    idx, targets = InstructionBatches(encoded, 2, tokenizer.eos_id).eval_batches().__next__()
    assert (targets == IGNORE_INDEX).any() and (targets != IGNORE_INDEX).any()

    rows, labels = [], []
    for entry in (WITH_INPUT, ENTRY):
        ids, prompt_length = encode_instruction(entry, tokenizer)
        rows.append(ids)
        labels.append([IGNORE_INDEX] * prompt_length + ids[prompt_length:])
    T = max(map(len, rows))
    input_ids = torch.tensor([r + [tokenizer.eos_id] * (T - len(r)) for r in rows])
    hf_labels = torch.tensor([r + [IGNORE_INDEX] * (T - len(r)) for r in labels])

    _, loss = model(idx, targets)
    loss.backward()
    expected = hf(input_ids=input_ids, labels=hf_labels).loss
    expected.backward()
    assert_close(loss, expected, atol=1e-5, rtol=0)
    grads = state_dict_to_hf({name: p.grad for name, p in model.named_parameters()})
    hf_grads = {name: p.grad for name, p in hf.named_parameters()}
    assert set(grads) == set(hf_grads)
    for name, grad in grads.items():
        assert_close(grad, hf_grads[name], atol=1e-5, rtol=0, msg=name)
