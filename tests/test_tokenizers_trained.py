"""gptlab.tokenizers.trained and .parallel: a BPE trained with `tokenizers`, joint or separate
vocabularies for translation, saved into a run and read back."""

from __future__ import annotations

import json

import pytest

from gptlab.errors import TokenizerError
from gptlab.tokenizers import (
    CharTokenizer,
    TrainedBPE,
    load_parallel_tokenizers,
    load_tokenizer,
    save_parallel_tokenizers,
    train_parallel_tokenizers,
)
from gptlab.tokenizers.trained import SPECIAL_TOKENS

PAIRS = [
    ("Ein Mann fährt ein rotes Fahrrad.", "A man rides a red bicycle."),
    ("Eine Frau liest ein Buch im Park.", "A woman reads a book in the park."),
    ("Zwei Hunde spielen im Schnee.", "Two dogs play in the snow."),
    ("Ein Kind läuft über die Straße.", "A child runs across the street."),
] * 5


@pytest.fixture(scope="module")
def joint():
    return train_parallel_tokenizers(PAIRS, vocab_size=500)


def test_special_tokens_take_ids_0_to_3(joint):
    tokenizer, _ = joint
    assert (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, tokenizer.unk_id) == (0, 1, 2, 3)
    assert [tokenizer.id_to_token(i) for i in range(4)] == list(SPECIAL_TOKENS)


def test_decode_inverts_encode_for_any_text(joint):
    tokenizer, _ = joint
    for text in ["Ein Mann fährt.", "  spaces\tand a tab ", "日本語 😀", "", "x"]:
        ids = tokenizer.encode(text)
        assert tokenizer.decode(ids) == text
        assert tokenizer.unk_id not in ids  # byte-level: nothing is unknown


def test_a_word_is_one_token_at_the_start_of_a_sentence_and_inside_one(joint):
    tokenizer, _ = joint
    assert tokenizer.encode("Mann") == tokenizer.encode("Ein Mann")[-1:]


def test_encode_adds_no_special_token_and_decode_can_skip_them(joint):
    tokenizer, _ = joint
    ids = tokenizer.encode("A red bicycle.")
    assert not set(ids) & {0, 1, 2, 3}
    framed = [tokenizer.bos_id, *ids, tokenizer.eos_id, tokenizer.pad_id]
    assert tokenizer.decode(framed, skip_special_tokens=True) == "A red bicycle."
    assert tokenizer.decode(framed).startswith("<bos>")
    assert tokenizer.encode_batch(["A red bicycle.", "Ein Mann"]) == [
        ids,
        tokenizer.encode("Ein Mann"),
    ]


def test_training_learns_frequent_words_as_single_tokens(joint):
    tokenizer, _ = joint
    assert len(tokenizer.encode("Ein Mann")) == 2
    assert tokenizer.vocab_size <= 500


def test_joint_is_one_tokenizer_for_both_sides(joint):
    source, target = joint
    assert source is target


def test_separate_vocabularies_are_each_learned_from_one_side():
    source, target = train_parallel_tokenizers(PAIRS, vocab_size=280, joint=False)
    assert source.fingerprint() != target.fingerprint()
    # "Schnee" is German only: one side learns it as a word, the other never saw it.
    assert len(source.encode("Schnee")) < len(target.encode("Schnee"))
    assert len(target.encode("snow")) < len(source.encode("snow"))


def test_joint_pair_saves_once_and_loads_as_any_tokenizer(joint, tmp_path):
    source, target = joint
    save_parallel_tokenizers(tmp_path, source, target)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["kind"] == "trained-bpe"
    loaded_source, loaded_target = load_parallel_tokenizers(tmp_path)
    assert loaded_source is loaded_target
    assert loaded_source.fingerprint() == source.fingerprint()
    assert isinstance(load_tokenizer(tmp_path), TrainedBPE)
    text = "Zwei Hunde spielen."
    assert loaded_source.encode(text) == source.encode(text)


def test_separate_pair_saves_into_source_and_target(tmp_path):
    source, target = train_parallel_tokenizers(PAIRS, vocab_size=280, joint=False)
    save_parallel_tokenizers(tmp_path, source, target)
    loaded_source, loaded_target = load_parallel_tokenizers(tmp_path)
    assert (tmp_path / "source" / "tokenizer.json").is_file()
    assert loaded_source.fingerprint() == source.fingerprint()
    assert loaded_target.fingerprint() == target.fingerprint()


def test_saved_tokenizer_json_is_read_by_transformers(joint, tmp_path):
    transformers = pytest.importorskip("transformers")
    tokenizer, _ = joint
    tokenizer.save(tmp_path)
    hf = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    text = "Eine Frau liest ein Buch."
    assert hf(text, add_special_tokens=False)["input_ids"] == tokenizer.encode(text)


def test_a_folder_without_tokenizers_is_one_clear_error(tmp_path):
    with pytest.raises(TokenizerError, match="holds no translation tokenizer"):
        load_parallel_tokenizers(tmp_path)


def test_a_corrupt_tokenizer_json_is_a_tokenizer_error(joint, tmp_path):
    joint[0].save(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="cannot read tokenizer file"):
        load_tokenizer(tmp_path)


@pytest.mark.parametrize(
    ("pairs", "vocab_size", "message"),
    [
        (PAIRS, 100, "too small"),
        ([], 300, "no sentence pairs"),
        ([("", "")], 300, "every sentence is empty"),
    ],
)
def test_training_refuses_bad_input(pairs, vocab_size, message):
    with pytest.raises(TokenizerError, match=message):
        train_parallel_tokenizers(pairs, vocab_size)


def test_any_kind_of_tokenizer_pair_saves_and_loads(tmp_path):
    source, target = CharTokenizer.from_text("0123456789+"), CharTokenizer.from_text("0123456789")
    save_parallel_tokenizers(tmp_path, source, target)
    loaded_source, loaded_target = load_parallel_tokenizers(tmp_path)
    assert (loaded_source.chars, loaded_target.chars) == (source.chars, target.chars)
