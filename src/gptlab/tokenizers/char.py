"""A character tokenizer: one id per distinct character of a corpus.

The vocabulary is the sorted set of characters of the training text, as in nanoGPT's
`shakespeare_char`: TinyShakespeare gives 65 ids, so a tiny model trains in minutes and every
prediction is a letter you can read. It knows nothing beyond its corpus: a character the corpus
did not contain cannot be encoded, and says so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from gptlab.errors import TokenizerError
from gptlab.tokenizers.base import (
    MASK_TOKEN,
    Tokenizer,
    ids_as_list,
    preview,
    read_config,
    read_json,
    short_digest,
    write_config,
    write_text,
)

VOCAB_FILE = "char_vocab.json"


class CharTokenizer(Tokenizer):
    """Each character of the vocabulary is one token; ids follow the characters' sorted order."""

    kind = "char"

    def __init__(self, chars: Sequence[str], special_tokens: Sequence[str] = ()):
        """special_tokens: whole strings (like [MASK]) with ids after the characters', matched
        in a text before it is cut into characters."""
        chars = list(chars)
        if not chars:
            raise TokenizerError("a character tokenizer needs at least one character")
        if any(not isinstance(char, str) or len(char) != 1 for char in chars):
            raise TokenizerError("a character vocabulary holds single characters only")
        if len(set(chars)) != len(chars):
            raise TokenizerError("a character vocabulary cannot hold the same character twice")
        special_tokens = list(special_tokens)
        if any(len(token) < 2 for token in special_tokens) or len(set(special_tokens)) != len(
            special_tokens
        ):
            raise TokenizerError(
                "special tokens must be distinct strings of two characters or more"
            )
        self.chars = chars
        self.special_tokens = special_tokens
        self.eos_id = None  # a plain character corpus has no end-of-text token
        self._id_of = {char: index for index, char in enumerate(chars)}
        self._special_id = {token: len(chars) + i for i, token in enumerate(special_tokens)}
        self._special_pattern = (
            re.compile("(" + "|".join(map(re.escape, special_tokens)) + ")")
            if special_tokens
            else None
        )

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """The tokenizer whose vocabulary is the sorted distinct characters of `text`."""
        if not text:
            raise TokenizerError("cannot build a character tokenizer from an empty text")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + len(self.special_tokens)

    @property
    def special_ids(self) -> list[int]:
        return list(self._special_id.values())

    @property
    def mask_id(self) -> int | None:
        return self._special_id.get(MASK_TOKEN)

    def encode(self, text: str) -> list[int]:
        if self._special_pattern is None:
            return self._encode_chars(text)
        ids = []
        # split() with a group keeps the separators: odd pieces are the special tokens.
        for i, piece in enumerate(self._special_pattern.split(text)):
            ids.extend([self._special_id[piece]] if i % 2 else self._encode_chars(piece))
        return ids

    def _encode_chars(self, text: str) -> list[int]:
        try:
            return [self._id_of[char] for char in text]
        except KeyError:
            unknown = sorted(set(text) - self._id_of.keys())
            raise TokenizerError(
                f"{len(unknown)} character(s) not in this tokenizer's vocabulary of "
                f"{self.vocab_size}: {preview(map(repr, unknown))} (a character tokenizer knows "
                "only the characters of the text it was built from)"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        pieces = self.chars + self.special_tokens
        return "".join(pieces[i] for i in ids_as_list(ids, self.vocab_size))

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        # A JSON list, one character a line in id order: JSON escapes newlines and other control
        # characters, so each entry stays unambiguous.
        write_text(
            directory / VOCAB_FILE, json.dumps(self.chars, ensure_ascii=False, indent=0) + "\n"
        )
        extra = {"special_tokens": self.special_tokens} if self.special_tokens else {}
        write_config(directory, self.kind, **extra)

    @classmethod
    def load(cls, directory: str | Path) -> CharTokenizer:
        directory = Path(directory)
        config = read_config(directory, kind=cls.kind)
        path = directory / VOCAB_FILE
        chars = read_json(path)
        if not isinstance(chars, list):
            raise TokenizerError(f"{path} should hold a JSON list of characters")
        try:
            return cls(chars, config.get("special_tokens", []))
        except TokenizerError as error:
            raise TokenizerError(f"{path}: {error}") from None

    def fingerprint(self) -> str:
        if not self.special_tokens:  # as before special tokens existed: cached corpora stay valid
            return short_digest({"chars": self.chars})
        return short_digest({"chars": self.chars, "special_tokens": self.special_tokens})
