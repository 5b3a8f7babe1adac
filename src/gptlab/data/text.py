"""Language-model data: a text tokenized once into a memory-mapped array, and batches of windows.

A corpus is encoded a single time and stored as a flat array of token ids under
`GPTLAB_HOME/tokens/`, named by the sha256 of the text and the tokenizer's fingerprint: the same
text with the same tokenizer is never encoded twice, and a changed text or tokenizer gets a new
file. The array is memory-mapped, so a corpus larger than RAM costs only the pages a batch touches.

Three ways to read it:

- `TokenData.train_batch(step, index, ...)`: random windows drawn from a generator seeded by
  (seed, step, index) alone. A batch is a pure function of its position in training, so a resumed
  run, or one rank of several, draws exactly the batch an uninterrupted run would have drawn.
- `TokenData.eval_batches(split, ...)`: the same evenly spread windows at every call, so two
  evaluations of a split are comparable.
- `TokenWindowDataset` and `make_dataloader`: the usual torch `Dataset` / `DataLoader`, with workers.
"""

from __future__ import annotations

import hashlib
import json
import mmap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from gptlab.atomic import atomic_write
from gptlab.data.corpora import CORPORA, build_corpus
from gptlab.data.sources import REGISTRY, gptlab_home, resolve
from gptlab.errors import DataError

SPLITS = ("train", "val")

# Tokenizer kinds whose ids for a text equal the joined ids of its chunks (see `_encode`); any
# other kind encodes the whole text in one call.
_CHUNKABLE_KINDS = frozenset({"char", "gpt2"})
_CHUNKS_PER_BATCH = 32  # chunks of about 64k characters: a few MB of text per batched encode


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer type that holds every id of the vocabulary."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def tokenize_corpus(text_path: Path, tokenizer) -> np.memmap:
    """The token ids of a UTF-8 text file as a read-only memory-mapped array, encoded once and cached."""
    text_path = Path(text_path)
    try:
        raw = text_path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read the text file {text_path}: {error.strerror}") from None
    if not raw:
        raise DataError(f"{text_path} is empty: a language model needs text to learn from")

    text_sha256 = hashlib.sha256(raw).hexdigest()
    fingerprint = tokenizer.fingerprint()
    key = hashlib.sha256(f"{text_sha256}:{tokenizer.kind}:{fingerprint}".encode()).hexdigest()
    tokens_path = gptlab_home() / "tokens" / f"{key}.bin"
    meta_path = tokens_path.with_suffix(".json")
    cached = _open_cached(tokens_path, meta_path)
    if cached is not None:
        return cached

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(
            f"{text_path} is not UTF-8 text (invalid byte at offset {error.start})"
        ) from None
    dtype = token_dtype(tokenizer.vocab_size)
    length = 0
    with atomic_write(tokens_path) as out:
        for ids in _encode(text, tokenizer):
            out.write(np.asarray(ids, dtype=dtype).tobytes())
            length += len(ids)
        if length == 0:
            raise DataError(f"{text_path} encodes to no tokens with the {tokenizer.kind} tokenizer")
    meta = {
        "dtype": dtype.name,
        "length": length,
        "source": str(text_path.resolve()),
        "source_sha256": text_sha256,
        "tokenizer_kind": tokenizer.kind,
        "tokenizer_fingerprint": fingerprint,
        "vocab_size": tokenizer.vocab_size,
    }
    # The metadata is written last: a token file counts as cached only once its metadata exists.
    with atomic_write(meta_path, "w") as out:
        json.dump(meta, out, indent=2)
    return np.memmap(tokens_path, dtype=dtype, mode="r", shape=(length,))


def _open_cached(tokens_path: Path, meta_path: Path) -> np.memmap | None:
    try:
        meta = json.loads(meta_path.read_text())
        dtype = np.dtype(meta["dtype"])
        if tokens_path.stat().st_size != meta["length"] * dtype.itemsize:
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return np.memmap(tokens_path, dtype=dtype, mode="r", shape=(meta["length"],))


def _encode(text: str, tokenizer) -> Iterator[list[int]]:
    """The ids of `text` in order, a batch of chunks at a time: a large corpus is never one list of ints."""
    if tokenizer.kind not in _CHUNKABLE_KINDS:
        yield tokenizer.encode(text)
        return
    from tqdm import tqdm

    # The cut points are GPT-2's own: after a lone newline between two non-space characters, where
    # its pre-tokenizing regex always ends a piece, so the chunks' ids join to exactly the ids of
    # the whole text (the proof is beside `split_for_parallel_encoding`). A character tokenizer
    # gives the same ids however the text is cut.
    from gptlab.tokenizers.gpt2 import split_for_parallel_encoding

    chunks = split_for_parallel_encoding(text)
    for start in tqdm(
        range(0, len(chunks), _CHUNKS_PER_BATCH), desc="tokenizing", unit="batch", disable=None
    ):
        yield from tokenizer.encode_batch(chunks[start : start + _CHUNKS_PER_BATCH])


def resolve_text(spec: str | Path) -> Path:
    """The text file named by `--data`: a path to a file, a one-file registered dataset, or a corpus."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if str(spec) in REGISTRY:
        return resolve(str(spec))
    if str(spec) in CORPORA:
        return build_corpus(str(spec))
    raise DataError(
        f"{spec} is neither a text file nor a known dataset ({', '.join(REGISTRY)}) "
        f"or corpus ({', '.join(CORPORA)})"
    )


class TokenData:
    """A token array split by position: the first tokens train, the last `val_fraction` validate."""

    def __init__(self, tokens: np.ndarray, val_fraction: float = 0.1):
        if not 0.0 <= val_fraction < 1.0:
            raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.tokens = tokens
        self.val_fraction = val_fraction
        self.split_at = int(len(tokens) * (1.0 - val_fraction))

    @classmethod
    def from_file(cls, path: Path, tokenizer, val_fraction: float = 0.1) -> TokenData:
        """Tokenize a text file (or reuse its cached tokens) and split it."""
        return cls(tokenize_corpus(path, tokenizer), val_fraction)

    @property
    def train(self) -> np.ndarray:
        return self.tokens[: self.split_at]

    @property
    def val(self) -> np.ndarray:
        return self.tokens[self.split_at :]

    def split_range(self, split: str, block_size: int) -> tuple[int, int]:
        """(start, stop) of a split in `tokens`, checked to hold at least one window of block_size + 1."""
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        start, stop = (0, self.split_at) if split == "train" else (self.split_at, len(self.tokens))
        if stop - start < block_size + 1:
            raise DataError(
                f"the {split} split has {stop - start:,} tokens, fewer than one window of "
                f"block_size + 1 = {block_size + 1:,}: use a longer text, a smaller block size or another val_fraction"
            )
        return start, stop

    def train_batch(
        self, step: int, index: int, batch_size: int, block_size: int, seed: int, device="cpu"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random training windows that depend only on (seed, step, index): x, y of shape (B, T)."""
        start, stop = self.split_range("train", block_size)
        generator = torch.Generator().manual_seed(batch_seed(seed, step, index))
        starts = torch.randint(
            stop - start - block_size, (batch_size,), generator=generator
        ).numpy()
        return _windows(self.train, starts, block_size, device)

    def eval_batches(
        self, split: str, batch_size: int, block_size: int, num_batches: int, device="cpu"
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """num_batches batches of windows spread evenly over a split, the same at every call."""
        start, stop = self.split_range(split, block_size)
        tokens = self.tokens[start:stop]
        count = batch_size * num_batches
        starts = np.linspace(0, len(tokens) - block_size - 1, count).round().astype(np.int64)
        return (
            _windows(tokens, starts[i : i + batch_size], block_size, device)
            for i in range(0, count, batch_size)
        )

    def dataset(self, split: str, block_size: int, stride: int | None = None) -> TokenWindowDataset:
        """The windows of a split as a torch Dataset (non-overlapping unless `stride` < block_size)."""
        start, stop = self.split_range(split, block_size)
        return TokenWindowDataset(self.tokens, start, stop, block_size, stride)


def batch_seed(seed: int, step: int, index: int) -> int:
    """The seed of batch `index` of training step `step`: every batch drawn from (step, index)
    alone is what makes resuming exact."""
    # SeedSequence mixes the three numbers thoroughly, so nearby (step, index) pairs give unrelated
    # streams, which seed + step * k + index would not.
    return int(np.random.SeedSequence((seed, step, index)).generate_state(1, np.uint64)[0])


def _windows(
    tokens: np.ndarray, starts: np.ndarray, block_size: int, device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets of the windows starting at `starts`, gathered in one indexing."""
    offsets = starts[:, None] + np.arange(block_size + 1)  # (B, T+1)
    windows = np.asarray(tokens[offsets])  # (B, T+1), read from the memmap in one fancy index
    x = torch.from_numpy(windows[:, :-1].astype(np.int64))  # (B, T)
    y = torch.from_numpy(windows[:, 1:].astype(np.int64))  # (B, T)
    device = torch.device(device)
    if device.type == "cuda":
        # Page-locked memory lets the copy run asynchronously while the GPU works on the last batch.
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(
            device, non_blocking=True
        )
    return x.to(device), y.to(device)


class TokenWindowDataset(Dataset):
    """Windows of `tokens[start:stop]`, item i starting at start + i * stride: (x, y) of shape (T,)."""

    def __init__(
        self, tokens: np.ndarray, start: int, stop: int, block_size: int, stride: int | None = None
    ):
        self.tokens = tokens
        self.start, self.stop = start, stop
        self.block_size = block_size
        self.stride = stride or block_size
        if stop - start < block_size + 1:
            raise DataError(
                f"{stop - start:,} tokens hold no window of block_size + 1 = {block_size + 1:,}"
            )

    def __len__(self) -> int:
        return (self.stop - self.start - self.block_size - 1) // self.stride + 1

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(f"window {i} out of range for {len(self)} windows")
        begin = self.start + i * self.stride
        window = np.asarray(
            self.tokens[begin : begin + self.block_size + 1], dtype=np.int64
        )  # (T+1,)
        return torch.from_numpy(window[:-1]), torch.from_numpy(window[1:])  # (T,), (T,)

    # Workers receive the dataset by pickling. A memmap of a whole file (its base is the mmap itself,
    # not another array) is sent as its file name and reopened there rather than copied whole into
    # each worker; any other array is pickled as it is.
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if isinstance(self.tokens, np.memmap) and isinstance(self.tokens.base, mmap.mmap):
            state["tokens"] = (
                self.tokens.filename,
                self.tokens.dtype.str,
                self.tokens.offset,
                len(self.tokens),
            )
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state["tokens"], tuple):
            filename, dtype, offset, length = state["tokens"]
            state["tokens"] = np.memmap(
                filename, dtype=np.dtype(dtype), mode="r", offset=offset, shape=(length,)
            )
        self.__dict__.update(state)


def make_dataloader(
    data: TokenData,
    split: str,
    batch_size: int,
    block_size: int,
    shuffle: bool = True,
    num_workers: int = 0,
    seed: int = 0,
    pin_memory: bool = False,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader over the non-overlapping windows of a split; the shuffled order depends on `seed`."""
    return DataLoader(
        data.dataset(split, block_size),
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
        pin_memory=pin_memory,
        drop_last=drop_last,
        persistent_workers=num_workers > 0,
    )
