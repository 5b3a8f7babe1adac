"""A fixed vocabulary of single-character symbols with the special tokens of sequence-to-sequence.

The toy tasks (copy, reverse, sort, addition) need no learned vocabulary: their alphabet is
known in advance ("0123456789+"). Ids 0-2 are `<pad>`, `<bos>` and `<eos>`, as in the trained
translation tokenizers, and each symbol follows in the alphabet's order. Spaces are ignored
when encoding, so "1 2 3" and "123" are the same sequence.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from gptlab.errors import TokenizerError
from gptlab.tokenizers.base import (
    Tokenizer,
    ids_as_list,
    preview,
    read_config,
    read_json,
    short_digest,
    write_config,
    write_text,
)

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>")
VOCAB_FILE = "symbols.json"


class SymbolTokenizer(Tokenizer):
    """`<pad>` `<bos>` `<eos>` as ids 0-2, then one id per symbol of a fixed alphabet."""

    kind = "symbols"
    pad_id, bos_id, eos_id = 0, 1, 2

    def __init__(self, symbols: Sequence[str]):
        symbols = list(symbols)
        if not symbols or any(
            not isinstance(s, str) or len(s) != 1 or s.isspace() for s in symbols
        ):
            raise TokenizerError("a symbol vocabulary holds single, non-space characters")
        if len(set(symbols)) != len(symbols):
            raise TokenizerError("a symbol vocabulary cannot hold the same symbol twice")
        self.symbols = symbols
        self._id_of = {s: i + len(SPECIAL_TOKENS) for i, s in enumerate(symbols)}

    @property
    def special_ids(self) -> list[int]:
        return list(range(len(SPECIAL_TOKENS)))

    @property
    def vocab_size(self) -> int:
        return len(SPECIAL_TOKENS) + len(self.symbols)

    def encode(self, text: str) -> list[int]:
        text = "".join(text.split())
        unknown = sorted(set(text) - self._id_of.keys())
        if unknown:
            raise TokenizerError(
                f"symbol(s) {preview(map(repr, unknown))} are not in this vocabulary "
                f"({''.join(self.symbols)})"
            )
        return [self._id_of[s] for s in text]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """The symbols of `ids`; special tokens show as <pad> <bos> <eos> unless skipped."""
        pieces = []
        for i in ids_as_list(ids, self.vocab_size):
            if i in self.special_ids:
                if not skip_special_tokens:
                    pieces.append(SPECIAL_TOKENS[i])
            else:
                pieces.append(self.symbols[i - len(SPECIAL_TOKENS)])
        return "".join(pieces)

    def token_strings(self, ids: Iterable[int]) -> list[str]:
        """Each id as its own label (for pictures)."""
        return [self.decode([i]) for i in ids]

    def save(self, directory: str | Path) -> None:
        write_text(Path(directory) / VOCAB_FILE, json.dumps(self.symbols) + "\n")
        write_config(Path(directory), self.kind)

    @classmethod
    def load(cls, directory: str | Path) -> SymbolTokenizer:
        read_config(directory, kind=cls.kind)
        symbols = read_json(Path(directory) / VOCAB_FILE)
        if not isinstance(symbols, list):
            raise TokenizerError(f"{Path(directory) / VOCAB_FILE} should hold a JSON list")
        return cls(symbols)

    def fingerprint(self) -> str:
        return short_digest({"symbols": self.symbols})
