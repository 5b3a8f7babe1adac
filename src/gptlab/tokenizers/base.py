"""The interface every gptlab tokenizer shares, and the small file format they all use.

A tokenizer turns text into a list of integer ids and back. The three kinds (`char`, `gpt2`,
`bpe`) differ in how they cut text, but a model, a data pipeline or the command line only needs
what is here: `encode`, `decode`, `vocab_size`, `eos_id`, `save`, and a `fingerprint` that names
the vocabulary in cache keys.

A saved tokenizer is a folder: the kind's own files plus `tokenizer_config.json`, whose `"kind"`
says which class reads the folder back (`load_tokenizer`). Every file is written atomically, so a
crash mid-save leaves the previous tokenizer readable (DESIGN.md, "Run directory").
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from gptlab.errors import TokenizerError

CONFIG_FILE = "tokenizer_config.json"
MASK_TOKEN = "[MASK]"  # what a masked-language model fills in (BERT's spelling)


class Tokenizer(ABC):
    """Text to token ids and back: the interface shared by the char, GPT-2 and from-scratch BPE tokenizers."""

    kind: ClassVar[str]  # the name written to tokenizer_config.json: "char", "gpt2" or "bpe"
    eos_id: int | None  # the end-of-text id that separates documents, or None when there is none

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """How many ids there are: every id is in range(vocab_size)."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """The token ids of `text`."""

    @abstractmethod
    def decode(self, ids: Iterable[int]) -> str:
        """The text of token ids (a list, or a 1-D array or tensor)."""

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """The token ids of each text; kinds with a faster batched encoder override this."""
        return [self.encode(text) for text in texts]

    @abstractmethod
    def save(self, directory: str | Path) -> None:
        """Write this tokenizer's files and `tokenizer_config.json` into `directory`."""

    @classmethod
    @abstractmethod
    def load(cls, directory: str | Path) -> Tokenizer:
        """Read back a tokenizer that `save` wrote into `directory`."""

    @abstractmethod
    def fingerprint(self) -> str:
        """A short hex digest of the vocabulary: equal vocabularies give equal fingerprints."""

    @property
    def special_ids(self) -> list[int]:
        """Ids of the special tokens (end-of-text, [MASK]): never masked, never a random pick."""
        return [] if self.eos_id is None else [self.eos_id]

    @property
    def mask_id(self) -> int | None:
        """The id of [MASK], once `with_mask_token` has added it; None before."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, eos_id={self.eos_id})"


def short_digest(payload: Any) -> str:
    """16 hex digits of the sha256 of `payload` written as canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def ids_as_list(ids: Iterable[int], vocab_size: int) -> list[int]:
    """`ids` as a list of Python ints, checked to be in range(vocab_size).

    A model whose embedding is padded past the vocabulary (nanoGPT rounds 50257 up to 50304) can
    sample an id that names no token: that is reported here rather than decoded as nothing.
    """
    # Arrays and tensors convert in one call; iterating a tensor element by element is very slow.
    ids = ids.tolist() if hasattr(ids, "tolist") else [int(i) for i in ids]
    unknown = sorted({i for i in ids if not 0 <= i < vocab_size})
    if unknown:
        raise TokenizerError(
            f"token ids outside the vocabulary of {vocab_size}: {preview(map(str, unknown))}"
        )
    return ids


def preview(items: Iterable[str], limit: int = 10) -> str:
    """The first `limit` items joined by commas, with "..." when there are more: for error messages."""
    items = list(items)
    return ", ".join(items[:limit]) + (", ..." if len(items) > limit else "")


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 text to `path` atomically (a temporary file renamed over it)."""
    from gptlab.atomic import atomic_write

    with atomic_write(path) as file:
        file.write(text.encode("utf-8"))


def write_config(directory: Path, kind: str, **fields: Any) -> None:
    """Write `tokenizer_config.json` with the tokenizer's kind and any other fields it needs."""
    config = {"kind": kind, **fields}
    write_text(directory / CONFIG_FILE, json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def read_json(path: Path) -> Any:
    """A JSON file's content; a missing or unreadable file is a TokenizerError naming the path."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TokenizerError(f"tokenizer file not found: {path}") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise TokenizerError(f"cannot read tokenizer file {path}: {error}") from None


def read_config(directory: str | Path, kind: str | None = None) -> dict[str, Any]:
    """The content of a saved tokenizer's `tokenizer_config.json`, which must name its kind.

    With `kind`, the folder must hold a tokenizer of that kind.
    """
    path = Path(directory) / CONFIG_FILE
    config = read_json(path)
    if not isinstance(config, dict) or not isinstance(config.get("kind"), str):
        raise TokenizerError(f'{path} does not say which tokenizer it is: it needs a "kind" string')
    if kind is not None and config["kind"] != kind:
        raise TokenizerError(
            f"{path} describes a {config['kind']!r} tokenizer, not a {kind!r} one; "
            "load_tokenizer() reads any kind"
        )
    return config
