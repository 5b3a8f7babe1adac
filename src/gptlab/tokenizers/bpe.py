"""Byte-level BPE from scratch: GPT-2's tokenization algorithm, written to be read top to bottom.

Byte-pair encoding (Sennrich et al. 2016, "Neural Machine Translation of Rare Words with Subword
Units") starts from single symbols and learns, one at a time, which adjacent pair to merge into a
new symbol: each merge joins the pair that is most frequent in the training corpus. Encoding
replays the learned merges in the order they were learned.

GPT-2 (Radford et al. 2019, section 2.2) adds two ideas, both here:

1. It works on UTF-8 *bytes*, not characters: 256 base symbols spell every possible text, so
   nothing is ever unknown. Each byte is shown as a printable character (`bytes_to_unicode`), so
   tokens stay strings you can read: " the" is the token "Ġthe".
2. It first cuts text into pieces with a regular expression (`gpt2_split_pattern`): words,
   numbers, punctuation runs and whitespace. Merges never cross a piece, so "dog." and "dog!"
   share the token "dog" instead of each wasting a merge on their punctuation.

The file follows the algorithm: the byte alphabet, the pre-tokenizer, merging a pair, then the
`ByteLevelBPE` class that encodes (merges by rank), decodes (bytes back to text), trains (counts
pair frequencies) and saves. Given GPT-2's `vocab.json` and `merges.txt` it produces GPT-2's ids.
It is the reference to read, not the one to use on a large corpus: `GPT2Tokenizer` does the same
work in Rust, many times faster.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from itertools import pairwise
from pathlib import Path

from gptlab.errors import TokenizerError
from gptlab.tokenizers.base import Tokenizer, ids_as_list, read_config, write_config
from gptlab.tokenizers.bpe_files import (
    END_OF_TEXT,
    MERGES_FILE,
    VOCAB_FILE,
    Merge,
    bpe_fingerprint,
    read_vocab_and_merges,
    write_vocab_and_merges,
)

# How many distinct pieces the encoder remembers: the common words of a text recur constantly, so
# most pieces are merged once and then looked up.
MAX_CACHED_PIECES = 100_000


# 1. The byte alphabet -------------------------------------------------------------------------


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table from each of the 256 byte values to one printable character.

    The 188 bytes that are printable Latin-1 characters stand for themselves ("A" is "A"). The 68
    others (control characters, space, DEL, non-breaking and soft hyphen) would be invisible or
    awkward in a vocabulary file, so they are shifted to the characters from U+0100 on, in byte
    order: the space, byte 32, becomes "Ġ" (U+0120); the newline "Ċ". The table's order is the
    order of GPT-2's first 256 ids: "!" is id 0.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {byte: chr(byte) for byte in printable}
    shifted = 0
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(256 + shifted)
            shifted += 1
    return table


# 2. Pre-tokenization --------------------------------------------------------------------------

# GPT-2's pattern, as written in OpenAI's encoder.py for the third-party `regex` module:
#
#     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
#
# In words: an English contraction; or an optional space then a run of letters, of digits, or of
# other symbols; or whitespace, leaving its last space to start the next word ("\s+(?!\S)"), so
# "a   b" is "a", "  ", " b". Python's own `re` has no \p{L} (any letter) or \p{N} (any number),
# so we list those characters from `unicodedata`. Its \s also counts U+001C..U+001F as space where
# Unicode's White_Space property, which GPT-2's \s means, does not: we spell whitespace out too.
# The letters and numbers are those of Python's Unicode version (`unicodedata.unidata_version`):
# only characters assigned in a later version can be classed differently from `regex` or
# `tokenizers`, and the tests hold this pattern against both.
WHITESPACE = r"\t\n\x0b\x0c\r\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def unicode_category_class(prefix: str) -> str:
    """The inside of a regex `[...]` matching every character whose Unicode category starts with `prefix`."""
    ranges, start = [], None
    for code in range(sys.maxunicode + 2):
        inside = code <= sys.maxunicode and unicodedata.category(chr(code)).startswith(prefix)
        if inside and start is None:
            start = code
        elif not inside and start is not None:
            ranges.append(f"\\U{start:08x}-\\U{code - 1:08x}")
            start = None
    return "".join(ranges)


@functools.cache
def gpt2_split_pattern() -> re.Pattern[str]:
    """GPT-2's pre-tokenization regex for Python's `re` (built once: listing the letters takes ~0.2 s)."""
    letter, number, space = unicode_category_class("L"), unicode_category_class("N"), WHITESPACE
    return re.compile(
        r"'s|'t|'re|'ve|'m|'ll|'d"
        rf"| ?[{letter}]+| ?[{number}]+| ?[^{space}{letter}{number}]+"
        rf"|[{space}]+(?![^{space}])|[{space}]+"
    )


def pretokenize(text: str) -> list[str]:
    """`text` cut into GPT-2's pieces: "Hello world!" -> ["Hello", " world", "!"]."""
    return gpt2_split_pattern().findall(text)


# 3. Merging a pair ----------------------------------------------------------------------------


def merge_pair(symbols: tuple[str, ...], pair: Merge) -> tuple[str, ...]:
    """`symbols` with every occurrence of `pair`, left to right, joined into one symbol."""
    merged, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            merged.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            merged.append(symbols[i])
            i += 1
    return tuple(merged)


# 4. The tokenizer -----------------------------------------------------------------------------


class ByteLevelBPE(Tokenizer):
    """A byte-level BPE: a vocabulary (token -> id), merges in the order they were learned, special tokens."""

    kind = "bpe"

    def __init__(
        self, vocab: dict[str, int], merges: list[Merge], special_tokens: Sequence[str] = ()
    ):
        self.byte_to_char = bytes_to_unicode()
        missing = [char for char in self.byte_to_char.values() if char not in vocab]
        if missing:
            raise TokenizerError(
                f"a byte-level vocabulary needs all 256 byte tokens; missing {missing[:5]}"
            )
        unknown_special = [token for token in special_tokens if token not in vocab]
        if unknown_special:
            raise TokenizerError(f"special tokens missing from the vocabulary: {unknown_special}")
        self.vocab = vocab
        self.merges = list(merges)
        self.special_tokens = list(special_tokens)
        self.eos_id = vocab[END_OF_TEXT] if END_OF_TEXT in self.special_tokens else None

        # A lower rank merges first: rank 0 is the pair that was most frequent in training.
        self.merge_ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        # Each id's bytes, for decoding; a special token stands for its own text.
        char_to_byte = {char: byte for byte, char in self.byte_to_char.items()}
        self.bytes_of_id = [b""] * len(vocab)
        for token, index in vocab.items():
            if token in self.special_tokens:
                self.bytes_of_id[index] = token.encode("utf-8")
            elif all(char in char_to_byte for char in token):
                self.bytes_of_id[index] = bytes(char_to_byte[char] for char in token)
            else:
                raise TokenizerError(
                    f"vocabulary token {token!r} is neither special nor written in byte characters"
                )
        # Special tokens are cut out of the text before anything else, longest first, so that
        # "<|endoftext|>" is one id rather than the pieces "<|", "endoftext", "|>".
        longest_first = sorted(self.special_tokens, key=len, reverse=True)
        self.special_pattern = (
            re.compile("(" + "|".join(map(re.escape, longest_first)) + ")")
            if longest_first
            else None
        )
        self.cache: dict[str, list[int]] = {}  # piece -> ids: each distinct word is merged once

    @classmethod
    def from_files(
        cls,
        vocab_json: str | Path,
        merges_txt: str | Path,
        special_tokens: Sequence[str] | None = None,
    ) -> ByteLevelBPE:
        """The tokenizer of a `vocab.json` and `merges.txt` in GPT-2's format, such as GPT-2's own.

        `special_tokens` defaults to `<|endoftext|>` when the vocabulary has it, as GPT-2's does.
        """
        vocab, merges = read_vocab_and_merges(vocab_json, merges_txt)
        if special_tokens is None:
            special_tokens = [END_OF_TEXT] if END_OF_TEXT in vocab else []
        return cls(vocab, merges, special_tokens)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    # Encoding: cut the text, then merge each piece's bytes by rank.

    def encode(self, text: str) -> list[int]:
        parts = self.special_pattern.split(text) if self.special_pattern else [text]
        ids = []
        # re.split with a group alternates: text, special token, text, special token, ..., text.
        for index, part in enumerate(parts):
            if index % 2 == 1:
                ids.append(self.vocab[part])
                continue
            for piece in pretokenize(part):
                ids.extend(self.encode_piece(piece))
        return ids

    def encode_piece(self, piece: str) -> list[int]:
        """The ids of one pre-tokenized piece, such as " world"."""
        if piece in self.cache:
            return self.cache[piece]
        # " world" -> bytes 32 119 111 114 108 100 -> symbols Ġ w o r l d -> merged Ġworld
        symbols = tuple(self.byte_to_char[byte] for byte in piece.encode("utf-8"))
        symbols = self.apply_merges(symbols)
        ids = [self.vocab[symbol] for symbol in symbols]
        if len(self.cache) < MAX_CACHED_PIECES:
            self.cache[piece] = ids
        return ids

    def apply_merges(self, symbols: tuple[str, ...]) -> tuple[str, ...]:
        """Merge the adjacent pair of lowest rank, again and again, until no pair is a known merge.

        The lowest rank first, not left to right: that replays the merges in the order training
        learned them, which is what makes "Ġworld" rather than some other split of the same bytes.
        """
        while len(symbols) > 1:
            not_a_merge = len(self.merge_ranks)
            best = min(pairwise(symbols), key=lambda pair: self.merge_ranks.get(pair, not_a_merge))
            if best not in self.merge_ranks:
                break
            symbols = merge_pair(symbols, best)
        return symbols

    # Decoding: ids -> bytes -> text.

    def decode(self, ids: Iterable[int]) -> str:
        data = b"".join(self.bytes_of_id[i] for i in ids_as_list(ids, self.vocab_size))
        # A slice of ids can end inside a multi-byte character: show U+FFFD there, as GPT-2 does.
        return data.decode("utf-8", errors="replace")

    # Training: learn merges from a corpus.

    @classmethod
    def train(
        cls, text: str, vocab_size: int, special_tokens: Sequence[str] = (END_OF_TEXT,)
    ) -> ByteLevelBPE:
        """Learn a vocabulary of `vocab_size` ids from `text`: 256 bytes, the merges, then the special tokens.

        Training stops early, with a smaller vocabulary, when the corpus has no adjacent pair left
        to merge (every piece has become a single token).
        """
        byte_to_char = bytes_to_unicode()
        vocab = {char: index for index, char in enumerate(byte_to_char.values())}
        special_tokens = list(dict.fromkeys(special_tokens))
        if vocab_size < len(vocab) + len(special_tokens):
            raise TokenizerError(
                f"vocab_size {vocab_size} is too small: a byte-level BPE needs 256 byte tokens "
                f"plus {len(special_tokens)} special token(s)"
            )
        clashing = [token for token in special_tokens if not token or token in vocab]
        if clashing:
            raise TokenizerError(
                f"special tokens must be non-empty and not single bytes: {clashing}"
            )

        # Identical pieces merge identically, so each distinct piece is handled once, weighted by
        # how often it occurs. Special tokens are removed first: no merge may grow across one.
        segments = (
            re.split("|".join(map(re.escape, special_tokens)), text) if special_tokens else [text]
        )
        piece_counts = Counter(piece for segment in segments for piece in pretokenize(segment))
        words = [
            tuple(byte_to_char[byte] for byte in piece.encode("utf-8")) for piece in piece_counts
        ]
        counts = list(piece_counts.values())

        # How often each adjacent pair occurs in the corpus, and which words hold it.
        pair_counts: Counter[Merge] = Counter()
        words_with_pair: defaultdict[Merge, set[int]] = defaultdict(set)
        for index, word in enumerate(words):
            for pair in pairwise(word):
                pair_counts[pair] += counts[index]
                words_with_pair[pair].add(index)

        merges: list[Merge] = []
        while len(vocab) < vocab_size - len(special_tokens) and pair_counts:
            # The most frequent pair; a tie goes to the pair counted first, which keeps training
            # deterministic.
            best = max(pair_counts, key=pair_counts.__getitem__)
            merges.append(best)
            # Two merges can spell the same token ("a"+"bc" and "ab"+"c"): it keeps its first id.
            vocab.setdefault(best[0] + best[1], len(vocab))
            # Merge it inside every word that holds it. Only the pairs of those words change
            # count, so they are recounted rather than the whole corpus.
            for index in words_with_pair.pop(best):
                old, new = words[index], merge_pair(words[index], best)
                for pair in pairwise(old):
                    pair_counts[pair] -= counts[index]
                    if pair_counts[pair] == 0:
                        del pair_counts[pair]
                for pair in pairwise(new):
                    pair_counts[pair] += counts[index]
                    words_with_pair[pair].add(index)
                words[index] = new

        for token in special_tokens:
            vocab[token] = len(vocab)
        return cls(vocab, merges, special_tokens)

    # Saving: GPT-2's two files, plus which tokens are special.

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        write_vocab_and_merges(directory, self.vocab, self.merges)
        write_config(directory, self.kind, special_tokens=self.special_tokens)

    @classmethod
    def load(cls, directory: str | Path) -> ByteLevelBPE:
        directory = Path(directory)
        special_tokens = read_config(directory, kind=cls.kind).get("special_tokens", [])
        if not isinstance(special_tokens, list) or not all(
            isinstance(token, str) for token in special_tokens
        ):
            raise TokenizerError(
                f"{directory}: special_tokens in the tokenizer config should be a list of strings"
            )
        return cls.from_files(directory / VOCAB_FILE, directory / MERGES_FILE, special_tokens)

    def fingerprint(self) -> str:
        return bpe_fingerprint(self.vocab, self.merges, self.special_tokens)
