"""Tokenizers: GPT-2's exact ids (against transformers), the char tokenizer, the from-scratch BPE,
and the folder format that stores any of them with a model."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import shared_file

from gptlab.errors import TokenizerError
from gptlab.tokenizers import (
    END_OF_TEXT,
    ByteLevelBPE,
    CharTokenizer,
    GPT2Tokenizer,
    bytes_to_unicode,
    get_tokenizer,
    load_tokenizer,
    pretokenize,
)
from gptlab.tokenizers.gpt2 import split_for_parallel_encoding

# Characters that tell a faithful GPT-2 pre-tokenizer from a near miss: contractions, numbers
# that are not decimal digits, CJK numerals (letters), separators that Python's \s counts as space
# but GPT-2's does not, Unicode spaces, emoji, and whitespace runs before words and at the end.
TRICKY_TEXT = (
    "I'm they're 'S 'LL x²³ ½ Ⅻ 一二三 ٣٤ \x1c\x1d\x1e\x1f a\u00a0b  c\u3000d \u2028 e\u200bf "
    "😀🎉 naïve Ǆ ʰ ° \t\n\n  \r\n 123abc _x_ -- \x85 end   "
)


@pytest.fixture(scope="module")
def shakespeare() -> str:
    return shared_file("tinyshakespeare", "input.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def gpt2_files() -> tuple:
    """GPT-2's vocab.json and merges.txt from GPTLAB_DATA."""
    return shared_file("gpt2-tokenizer", "vocab.json"), shared_file("gpt2-tokenizer", "merges.txt")


@pytest.fixture(scope="module")
def gpt2(gpt2_files) -> GPT2Tokenizer:
    return GPT2Tokenizer.from_files(*gpt2_files)


@pytest.fixture(scope="module")
def transformers_gpt2(gpt2_files, tmp_path_factory):
    """transformers' GPT2TokenizerFast built from exactly GPT-2's vocab.json and merges.txt."""
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("hf_gpt2")
    for path in gpt2_files:
        shutil.copy(path, folder / path.name)
    return transformers.GPT2TokenizerFast.from_pretrained(folder)


@pytest.fixture(scope="module")
def shakespeare_gpt2_ids(gpt2, shakespeare) -> list[int]:
    return gpt2.encode(shakespeare)


@pytest.fixture(scope="module")
def scratch_gpt2(gpt2_files) -> ByteLevelBPE:
    """The from-scratch BPE loaded with GPT-2's vocabulary and merges."""
    return ByteLevelBPE.from_files(*gpt2_files)


@pytest.fixture(scope="module")
def trained_bpe(shakespeare) -> ByteLevelBPE:
    return ByteLevelBPE.train(shakespeare[:20_000], vocab_size=400)


# GPT-2 on the tokenizers library ----------------------------------------------------------------


def test_gpt2_encodes_all_of_tinyshakespeare_to_transformers_ids(
    shakespeare_gpt2_ids, transformers_gpt2, shakespeare
):
    assert len(shakespeare_gpt2_ids) == 338_025
    assert shakespeare_gpt2_ids == transformers_gpt2(shakespeare)["input_ids"]


def test_gpt2_decodes_tinyshakespeare_back_byte_for_byte(gpt2, shakespeare_gpt2_ids, shakespeare):
    assert gpt2.decode(shakespeare_gpt2_ids).encode("utf-8") == shakespeare.encode("utf-8")


def test_gpt2_encodes_hello_world_as_gpt2_does(gpt2):
    assert gpt2.encode("Hello world") == [15496, 995]


def test_gpt2_encodes_endoftext_as_its_one_special_id(gpt2):
    assert gpt2.encode(END_OF_TEXT) == [50256]
    assert gpt2.encode(f"a{END_OF_TEXT}b") == [64, 50256, 65]
    assert (gpt2.eos_id, gpt2.vocab_size) == (50256, 50257)


def test_gpt2_batch_encoding_equals_encoding_each_text(gpt2, transformers_gpt2):
    texts = ["Hello world", "", TRICKY_TEXT, f"one{END_OF_TEXT}two\n\nthree"]
    assert gpt2.encode_batch(texts) == [gpt2.encode(text) for text in texts]
    assert gpt2.encode_batch(texts) == transformers_gpt2(texts)["input_ids"]


def test_gpt2_long_text_cut_at_lone_newlines_keeps_its_ids(gpt2):
    # Every kind of whitespace around newlines, so that a wrong cut would change some id.
    text = "".join(
        f"line {i}{sep}"
        for i, sep in enumerate(["\n", " \n", "\n\n", "\n ", "  \n\n", "\r\n"] * 20)
    )
    chunks = split_for_parallel_encoding(text, chunk_chars=40)
    assert len(chunks) > 10 and "".join(chunks) == text
    assert [i for chunk_ids in gpt2.encode_batch(chunks) for i in chunk_ids] == gpt2.encode(text)


def test_gpt2_saved_folder_loads_in_transformers_with_the_same_ids(gpt2, tmp_path):
    transformers = pytest.importorskip("transformers")
    gpt2.save(tmp_path)
    assert {"vocab.json", "merges.txt", "tokenizer_config.json"} <= {
        path.name for path in tmp_path.iterdir()
    }
    reloaded = transformers.GPT2TokenizerFast.from_pretrained(tmp_path)
    text = f"{TRICKY_TEXT}{END_OF_TEXT} Hello world"
    assert reloaded(text)["input_ids"] == gpt2.encode(text)
    assert reloaded.eos_token_id == 50256


def test_gpt2_from_pretrained_reads_a_transformers_saved_folder(gpt2, transformers_gpt2, tmp_path):
    transformers_gpt2.save_pretrained(tmp_path)
    assert GPT2Tokenizer.from_pretrained(tmp_path).encode(TRICKY_TEXT) == gpt2.encode(TRICKY_TEXT)


def test_gpt2_folder_resaved_by_transformers_loads_back(gpt2, tmp_path):
    transformers = pytest.importorskip("transformers")
    gpt2.save(tmp_path / "ours")
    reloaded = transformers.GPT2TokenizerFast.from_pretrained(tmp_path / "ours")
    reloaded.save_pretrained(tmp_path / "theirs")
    assert load_tokenizer(tmp_path / "theirs").encode(TRICKY_TEXT) == gpt2.encode(TRICKY_TEXT)


@pytest.mark.parametrize("name", ["gpt2", "gpt2-xl", "openai-community/gpt2-medium"])
def test_gpt2_from_pretrained_by_model_name_uses_the_data_registry(name, gpt2_files, gpt2):
    pytest.importorskip("gptlab.data.sources")
    assert GPT2Tokenizer.from_pretrained(name).fingerprint() == gpt2.fingerprint()


def test_gpt2_from_pretrained_rejects_an_unknown_name():
    with pytest.raises(TokenizerError, match="gpt3"):
        GPT2Tokenizer.from_pretrained("gpt3")


def test_missing_tokenizer_file_raises_naming_the_path(gpt2_files, tmp_path):
    with pytest.raises(TokenizerError, match="nowhere.txt"):
        GPT2Tokenizer.from_files(gpt2_files[0], tmp_path / "nowhere.txt")


def test_corrupt_merges_file_raises_naming_the_path(gpt2_files, tmp_path):
    merges = tmp_path / "merges.txt"
    merges.write_text("#version: 0.2\nĠ t\nnot-a-pair\n", encoding="utf-8")
    with pytest.raises(TokenizerError, match=f"{merges}, line 3"):
        GPT2Tokenizer.from_files(gpt2_files[0], merges)


def test_decode_rejects_ids_outside_the_vocabulary(gpt2):
    with pytest.raises(TokenizerError, match="50300"):
        gpt2.decode([15496, 50300])


# The character tokenizer --------------------------------------------------------------------


def test_char_vocabulary_is_the_sorted_distinct_characters(shakespeare):
    assert CharTokenizer.from_text("hello").chars == ["e", "h", "l", "o"]
    tokenizer = CharTokenizer.from_text(shakespeare)
    assert tokenizer.vocab_size == 65 and tokenizer.eos_id is None


def test_char_decode_inverts_encode(shakespeare):
    tokenizer = CharTokenizer.from_text(shakespeare)
    assert tokenizer.encode("First") == [18, 47, 56, 57, 58]
    assert tokenizer.decode(tokenizer.encode(shakespeare)) == shakespeare


def test_char_unknown_character_raises_naming_it():
    with pytest.raises(TokenizerError, match=r"'z'.*'é'|'é'.*'z'"):
        CharTokenizer.from_text("abc").encode("abzé")


def test_char_save_and_load_give_the_same_tokenizer(tmp_path):
    tokenizer = CharTokenizer.from_text("to be,\nor not\tto bé\u2028")
    tokenizer.save(tmp_path)
    reloaded = CharTokenizer.load(tmp_path)
    assert reloaded.chars == tokenizer.chars


# The from-scratch byte-level BPE --------------------------------------------------------------


def test_byte_table_order_is_gpt2s_first_256_ids(gpt2_files):
    vocab = json.loads(gpt2_files[0].read_text(encoding="utf-8"))
    assert [vocab[char] for char in bytes_to_unicode().values()] == list(range(256))


def test_pretokenize_matches_the_tokenizers_library_byte_level_splitter(shakespeare):
    from tokenizers.pre_tokenizers import ByteLevel

    splitter = ByteLevel(add_prefix_space=False)
    # A sample: reading 300,000 pieces back out of the Rust splitter takes seconds. All of
    # TinyShakespeare is compared with OpenAI's regex below.
    for text in (TRICKY_TEXT, shakespeare[:100_000]):
        expected = [text[start:end] for _, (start, end) in splitter.pre_tokenize_str(text)]
        assert pretokenize(text) == expected


def test_pretokenize_matches_openais_regex(shakespeare):
    regex = pytest.importorskip("regex")
    pattern = regex.compile(
        r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    )
    for text in (TRICKY_TEXT, shakespeare):
        assert pretokenize(text) == pattern.findall(text)


def test_bpe_with_gpt2_files_reproduces_gpt2_ids_on_a_sample(scratch_gpt2, gpt2, shakespeare):
    sample = shakespeare[:20_000] + TRICKY_TEXT + END_OF_TEXT
    assert scratch_gpt2.encode(sample) == gpt2.encode(sample)
    assert scratch_gpt2.eos_id == 50256


def test_bpe_decode_inverts_encode_for_trained_and_unseen_text(trained_bpe, shakespeare):
    for text in (shakespeare[:20_000], TRICKY_TEXT, "naïve café, 東京 😀"):
        assert trained_bpe.decode(trained_bpe.encode(text)) == text


def test_bpe_training_fills_the_vocabulary_with_merges_then_special_tokens(trained_bpe):
    assert trained_bpe.vocab_size == 400
    assert len(trained_bpe.merges) == 400 - 256 - 1
    assert trained_bpe.encode(END_OF_TEXT) == [399] and trained_bpe.eos_id == 399


def test_bpe_training_merges_the_most_frequent_pair_first():
    # Pieces "abab" and " ab": the pair (a, b) occurs 3 times, every other pair once.
    tokenizer = ByteLevelBPE.train("abab ab", vocab_size=257, special_tokens=())
    assert tokenizer.merges == [("a", "b")]
    assert tokenizer.encode("abab") == [256, 256]


def test_bpe_training_stops_when_nothing_is_left_to_merge():
    tokenizer = ByteLevelBPE.train("ab", vocab_size=1000)
    assert tokenizer.merges == [("a", "b")] and tokenizer.vocab_size == 258


def test_bpe_training_rejects_a_vocabulary_smaller_than_the_bytes():
    with pytest.raises(TokenizerError, match="too small"):
        ByteLevelBPE.train("hello", vocab_size=256)


def test_bpe_save_and_load_give_the_same_tokenizer(trained_bpe, tmp_path):
    trained_bpe.save(tmp_path)
    reloaded = ByteLevelBPE.load(tmp_path)
    assert (reloaded.vocab, reloaded.merges, reloaded.special_tokens) == (
        trained_bpe.vocab,
        trained_bpe.merges,
        trained_bpe.special_tokens,
    )


def test_bpe_trained_files_give_the_same_ids_in_gpt2_tokenizer(trained_bpe, shakespeare, tmp_path):
    # The saved files are in GPT-2's format, so the Rust BPE can run what the Python one learned.
    trained_bpe.save(tmp_path)
    rust = GPT2Tokenizer.from_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    sample = shakespeare[20_000:40_000] + TRICKY_TEXT
    assert rust.encode(sample) == trained_bpe.encode(sample)


# Saving, loading and naming any kind ----------------------------------------------------------


@pytest.fixture(params=["char", "gpt2", "bpe"])
def any_tokenizer(request, shakespeare):
    if request.param == "char":
        return CharTokenizer.from_text(shakespeare)
    return request.getfixturevalue({"gpt2": "gpt2", "bpe": "trained_bpe"}[request.param])


def test_load_tokenizer_reads_back_each_kind(any_tokenizer, tmp_path):
    any_tokenizer.save(tmp_path)
    reloaded = load_tokenizer(tmp_path)
    assert type(reloaded) is type(any_tokenizer)
    assert (
        json.loads((tmp_path / "tokenizer_config.json").read_text())["kind"] == any_tokenizer.kind
    )
    text = "Before we proceed any further, hear me speak."
    assert reloaded.encode(text) == any_tokenizer.encode(text)


def test_fingerprint_is_stable_across_save_and_load(any_tokenizer, tmp_path):
    any_tokenizer.save(tmp_path)
    assert load_tokenizer(tmp_path).fingerprint() == any_tokenizer.fingerprint()


def test_fingerprint_differs_between_vocabularies(gpt2, trained_bpe, shakespeare):
    fingerprints = {
        CharTokenizer.from_text("abc").fingerprint(),
        CharTokenizer.from_text("abd").fingerprint(),
        gpt2.fingerprint(),
        trained_bpe.fingerprint(),
        ByteLevelBPE.train(shakespeare[:20_000], vocab_size=300).fingerprint(),
    }
    assert len(fingerprints) == 5


def test_fingerprint_is_shared_by_both_bpes_on_gpt2_files(gpt2, scratch_gpt2):
    assert scratch_gpt2.fingerprint() == gpt2.fingerprint()


def test_load_tokenizer_without_a_config_raises_naming_it(tmp_path):
    with pytest.raises(TokenizerError, match="tokenizer_config.json"):
        load_tokenizer(tmp_path)


def test_load_tokenizer_rejects_an_unknown_kind(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text('{"kind": "sentencepiece"}')
    with pytest.raises(TokenizerError, match="sentencepiece"):
        load_tokenizer(tmp_path)


def test_get_tokenizer_builds_char_from_text_and_gpt2_by_name(gpt2_files):
    assert get_tokenizer("char", text="hello").vocab_size == 4
    pytest.importorskip("gptlab.data.sources")
    assert get_tokenizer("gpt2").encode("Hello world") == [15496, 995]


def test_get_tokenizer_rejects_char_without_text_and_unknown_names():
    with pytest.raises(TokenizerError, match="text"):
        get_tokenizer("char")
    with pytest.raises(TokenizerError, match="sentencepiece"):
        get_tokenizer("sentencepiece")
