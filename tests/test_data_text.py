"""gptlab.data.text: the token cache, the train/val split, and the three ways to read batches."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from gptlab.data.text import TokenData, make_dataloader, resolve_text, tokenize_corpus
from gptlab.errors import DataError


class CodePointTokenizer:
    """A stand-in tokenizer: one id per character, its Unicode code point. Counts its encodings."""

    kind = "char"

    def __init__(self, vocab_size: int = 0x110000, salt: str = ""):
        self.vocab_size = vocab_size
        self.salt = salt
        self.calls = 0

    def encode(self, text: str) -> list[int]:
        self.calls += 1
        return [ord(c) for c in text]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        self.calls += 1
        return [[ord(c) for c in text] for text in texts]

    def fingerprint(self) -> str:
        return f"codepoint-{self.vocab_size}-{self.salt}"


def counting_text(tmp_path: Path, length: int = 5000) -> Path:
    """A text whose tokens count up by one (CJK code points from U+4E00), so windows are easy to check."""
    path = tmp_path / "counting.txt"
    path.write_text("".join(chr(0x4E00 + i) for i in range(length)), encoding="utf-8")
    return path


def cached_token_files() -> list[str]:
    folder = Path(os.environ["GPTLAB_HOME"]) / "tokens"
    return sorted(p.name for p in folder.glob("*.bin"))


def test_a_corpus_is_encoded_once_and_then_read_from_the_cache(tmp_path):
    tokenizer = CodePointTokenizer()
    first = tokenize_corpus(counting_text(tmp_path), tokenizer)
    calls = tokenizer.calls
    second = tokenize_corpus(counting_text(tmp_path), tokenizer)
    assert tokenizer.calls == calls
    np.testing.assert_array_equal(first, second)
    assert isinstance(second, np.memmap)
    assert len(cached_token_files()) == 1


def test_the_cache_is_keyed_by_text_content_and_tokenizer(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("hello world\n" * 10)
    tokenize_corpus(path, CodePointTokenizer())
    path.write_text("hello there\n" * 10)
    changed_text = CodePointTokenizer()
    tokens = tokenize_corpus(path, changed_text)
    assert changed_text.calls > 0
    assert bytes(tokens[:11].astype(np.uint8)).decode() == "hello there"
    tokenize_corpus(path, CodePointTokenizer(salt="another tokenizer"))
    assert len(cached_token_files()) == 3


def test_cached_tokens_live_in_gptlab_home_never_beside_the_text(tmp_path):
    tokens = tokenize_corpus(counting_text(tmp_path), CodePointTokenizer())
    assert Path(tokens.filename).parent == Path(os.environ["GPTLAB_HOME"]) / "tokens"
    assert os.listdir(tmp_path) == ["counting.txt"]


def test_a_vocabulary_of_at_most_65536_ids_is_stored_as_uint16(tmp_path):
    path = tmp_path / "ascii.txt"
    path.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n")
    tokens = tokenize_corpus(path, CodePointTokenizer(vocab_size=65536))
    assert tokens.dtype == np.uint16
    assert tokens.tolist() == [ord(c) for c in path.read_text()]


def test_a_larger_vocabulary_is_stored_as_uint32(tmp_path):
    path = tmp_path / "wide.txt"
    path.write_text("emoji \U0001f600 beyond uint16\n")
    tokens = tokenize_corpus(path, CodePointTokenizer(vocab_size=0x110000))
    assert tokens.dtype == np.uint32
    assert 0x1F600 in tokens.tolist()


def test_an_empty_file_is_a_data_error(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="empty.txt is empty"):
        tokenize_corpus(path, CodePointTokenizer())


def test_a_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read the text file .*nowhere.txt"):
        tokenize_corpus(tmp_path / "nowhere.txt", CodePointTokenizer())


def test_a_file_that_is_not_utf8_is_a_data_error(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("café\n".encode("latin-1"))
    with pytest.raises(DataError, match="latin1.txt is not UTF-8 text .*offset 3"):
        tokenize_corpus(path, CodePointTokenizer())


def test_data_may_name_a_text_file_or_a_registered_dataset(tmp_path, tinyshakespeare):
    path = tmp_path / "mine.txt"
    path.write_text("my own corpus\n")
    assert resolve_text(str(path)) == path
    assert resolve_text("tinyshakespeare") == tinyshakespeare
    with pytest.raises(DataError, match="nowhere.txt is neither a text file nor a known dataset"):
        resolve_text(tmp_path / "nowhere.txt")


def test_a_corpus_shorter_than_one_window_is_a_data_error(tmp_path):
    data = TokenData.from_file(counting_text(tmp_path, 100), CodePointTokenizer())
    with pytest.raises(DataError, match="train split has 90 tokens, fewer than one window"):
        data.train_batch(0, 0, batch_size=2, block_size=90, seed=0)
    with pytest.raises(DataError, match="val split has 10 tokens"):
        data.eval_batches("val", batch_size=2, block_size=10, num_batches=1)


def test_the_split_is_by_token_position_train_first(tmp_path):
    data = TokenData.from_file(
        counting_text(tmp_path, 1000), CodePointTokenizer(), val_fraction=0.1
    )
    assert len(data.train) == 900 and len(data.val) == 100
    assert data.train[-1] + 1 == data.val[0] == 0x4E00 + 900


def test_train_batch_is_a_function_of_seed_step_and_index_only(tmp_path):
    data = TokenData.from_file(counting_text(tmp_path), CodePointTokenizer())
    batch = data.train_batch(step=7, index=3, batch_size=4, block_size=16, seed=1337)
    again = TokenData.from_file(counting_text(tmp_path), CodePointTokenizer()).train_batch(
        7, 3, 4, 16, 1337
    )
    assert torch.equal(batch[0], again[0]) and torch.equal(batch[1], again[1])
    for step, index, seed in [(8, 3, 1337), (7, 4, 1337), (7, 3, 1338)]:
        assert not torch.equal(batch[0], data.train_batch(step, index, 4, 16, seed)[0])
    # The three numbers are mixed, not added: step 8 of rank 3 is not step 7 of rank 4.
    assert not torch.equal(data.train_batch(8, 3, 4, 16, 0)[0], data.train_batch(7, 4, 4, 16, 0)[0])


def test_train_batch_windows_are_contiguous_with_targets_shifted_by_one(tmp_path):
    data = TokenData.from_file(counting_text(tmp_path), CodePointTokenizer())
    x, y = data.train_batch(step=0, index=0, batch_size=8, block_size=32, seed=0)
    assert x.shape == y.shape == (8, 32)
    assert x.dtype == y.dtype == torch.int64
    assert torch.equal(y, x + 1)  # the text counts up, so the next token is always one more
    assert torch.equal(x[:, 1:], x[:, :-1] + 1)
    assert int(x.min()) >= data.train[0] and int(y.max()) <= data.train[-1]


def test_eval_batches_sweep_the_split_evenly_and_the_same_every_time(tmp_path):
    data = TokenData.from_file(counting_text(tmp_path), CodePointTokenizer())
    first = list(data.eval_batches("val", batch_size=2, block_size=8, num_batches=3))
    second = list(data.eval_batches("val", batch_size=2, block_size=8, num_batches=3))
    assert len(first) == 3
    for (x1, y1), (x2, y2) in zip(first, second, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
        assert torch.equal(y1, x1 + 1)
    starts = torch.cat([x[:, 0] for x, _ in first])
    assert int(starts[0]) == data.val[0]  # the first window opens the split
    assert int(first[-1][1][-1, -1]) == data.val[-1]  # the last target closes it
    assert torch.all(starts.diff() > 0)


def test_dataset_windows_do_not_overlap_and_cover_the_split(tmp_path):
    data = TokenData.from_file(counting_text(tmp_path, 1000), CodePointTokenizer())
    dataset = data.dataset("train", block_size=10)
    assert len(dataset) == (900 - 1) // 10
    x, y = dataset[1]
    assert x.tolist() == list(range(0x4E00 + 10, 0x4E00 + 20))
    assert torch.equal(y, x + 1)
    with pytest.raises(IndexError):
        dataset[len(dataset)]


def test_dataset_pickles_its_memmap_by_file_name_not_by_content(tmp_path):
    data = TokenData.from_file(
        counting_text(tmp_path, 5000), CodePointTokenizer()
    )  # 20 kB of uint32
    dataset = data.dataset("val", block_size=10)
    payload = pickle.dumps(dataset)
    assert len(payload) < 1000
    copy = pickle.loads(payload)
    assert isinstance(copy.tokens, np.memmap) and copy.tokens.filename == data.tokens.filename
    assert len(copy) == len(dataset)
    assert all(torch.equal(a, b) for a, b in zip(copy[3], dataset[3], strict=True))


def test_dataloader_with_two_workers_yields_every_window_once(tmp_path):
    data = TokenData.from_file(counting_text(tmp_path, 1000), CodePointTokenizer())
    loader = make_dataloader(
        data, "train", batch_size=8, block_size=10, shuffle=True, num_workers=2, seed=3
    )
    starts = [int(s) for x, _ in loader for s in x[:, 0]]
    assert sorted(starts) == [0x4E00 + 10 * i for i in range(89)]
    assert starts != sorted(starts)
    again = make_dataloader(
        data, "train", batch_size=8, block_size=10, shuffle=True, num_workers=0, seed=3
    )
    assert [int(s) for x, _ in again for s in x[:, 0]] == starts


# Text that GPT-2's pre-tokenizer treats specially: runs of newlines and spaces, contractions,
# numbers and punctuation around line ends.
TRICKY_TEXT = (
    "First Citizen:\nBefore we proceed\n\n\nany further,\n \nhear me  \nspeak.\n"
    "ALL:\n Speak,\tspeak.\r\nYou're\n'tis 12\n34 ...\n!!\n\n"
)


def gptlab_tokenizer(name: str):
    """A class of gptlab.tokenizers, or a skip while it is not there."""
    module = pytest.importorskip("gptlab.tokenizers")
    if not hasattr(module, name):
        pytest.skip(f"gptlab.tokenizers has no {name} yet")
    return getattr(module, name)


def test_char_tokenizer_corpus_equals_encoding_the_whole_text(tmp_path):
    text = TRICKY_TEXT * 5000  # long enough to be encoded in several chunks
    path = tmp_path / "corpus.txt"
    path.write_text(text)
    tokenizer = gptlab_tokenizer("CharTokenizer").from_text(text)
    tokens = tokenize_corpus(path, tokenizer)
    assert tokens.dtype == np.uint16
    assert tokens.tolist() == tokenizer.encode(text)


def test_gpt2_corpus_equals_encoding_the_whole_text(tmp_path, gpt2_tokenizer_dir, tinyshakespeare):
    tokenizer = gptlab_tokenizer("GPT2Tokenizer").from_files(
        gpt2_tokenizer_dir / "vocab.json", gpt2_tokenizer_dir / "merges.txt"
    )
    text = TRICKY_TEXT + tinyshakespeare.read_text()[:300_000]
    path = tmp_path / "corpus.txt"
    path.write_text(text)
    tokens = tokenize_corpus(path, tokenizer)
    assert tokens.dtype == np.uint16
    from tokenizers import Tokenizer  # Hugging Face's, encoding the whole text in one piece

    reference = Tokenizer.from_file(str(gpt2_tokenizer_dir / "tokenizer.json"))
    assert tokens.tolist() == reference.encode(text).ids
