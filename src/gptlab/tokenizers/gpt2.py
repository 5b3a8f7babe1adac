"""GPT-2's tokenizer, exact to the id, on the Hugging Face `tokenizers` library (Rust).

GPT-2 (Radford et al. 2019, section 2.2) cuts text with a regular expression into words, numbers,
punctuation runs and whitespace, writes each piece's UTF-8 bytes as printable characters, and
merges adjacent symbols by the rank of `merges.txt` until no known merge is left. `tokenizers`
does exactly that with its `ByteLevel` pre-tokenizer and `BPE` model; `<|endoftext|>` is added as
a special token, so it encodes to 50256 wherever it appears in the text. The from-scratch version
of the same algorithm, written to be read, is `gptlab.tokenizers.bpe.ByteLevelBPE`.

The vocabulary comes from a local folder or from the gptlab data registry, which finds GPT-2's
`vocab.json` and `merges.txt` in `GPTLAB_DATA` or `GPTLAB_HOME`, or downloads them from
huggingface.co/openai-community/gpt2. Every GPT-2 size shares this one tokenizer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path

import tokenizers

from gptlab.errors import TokenizerError
from gptlab.tokenizers.base import (
    MASK_TOKEN,
    Tokenizer,
    ids_as_list,
    read_config,
    write_config,
    write_text,
)
from gptlab.tokenizers.bpe_files import (
    END_OF_TEXT,
    MERGES_FILE,
    VOCAB_FILE,
    Merge,
    bpe_fingerprint,
    read_hf_tokenizer_json,
    read_vocab_and_merges,
    write_vocab_and_merges,
)

GPT2_SIZES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
GPT2_NAMES = GPT2_SIZES + tuple(f"openai-community/{size}" for size in GPT2_SIZES)
HF_TOKENIZER_FILE = "tokenizer.json"

# A long text is encoded as chunks of about this many characters, in parallel (see below).
PARALLEL_CHUNK_CHARS = 1 << 16

# Where a text can be cut without changing GPT-2's ids: right after a "\n" that sits between two
# non-space characters. GPT-2's regex (`'s|'t|...| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`)
# never lets a piece run from a non-space character into whitespace, so in the whole text that
# "\n" is a piece of its own (`\s+`), and at the end of a chunk `\s+(?!\S)` takes the same lone
# "\n". The regex has no look-behind, so matching after the cut restarts exactly as it would
# have, and BPE merges never cross pieces. (Python's `\s` counts a few more characters as space
# than GPT-2's does, which only makes the rule stricter.) A run like "\n\n" is never cut: it is one
# token, 628, not two 198s.
_CUT_AFTER_LONE_NEWLINE = re.compile(r"(?<=\S\n)(?=\S)")


def split_for_parallel_encoding(text: str, chunk_chars: int = PARALLEL_CHUNK_CHARS) -> list[str]:
    """`text` cut at lone newlines into chunks of at least `chunk_chars`, whose ids concatenate to the text's."""
    chunks, start = [], 0
    while len(text) - start > 2 * chunk_chars:
        cut = _CUT_AFTER_LONE_NEWLINE.search(text, start + chunk_chars)
        if cut is None:
            break
        chunks.append(text[start : cut.start()])
        start = cut.start()
    chunks.append(text[start:])
    return chunks


class GPT2Tokenizer(Tokenizer):
    """GPT-2's byte-level BPE: 50,257 ids, exactly those of OpenAI's encoder and `GPT2TokenizerFast`."""

    kind = "gpt2"

    def __init__(
        self, vocab: dict[str, int], merges: list[Merge], extra_special_tokens: Iterable[str] = ()
    ):
        """extra_special_tokens: tokens added after GPT-2's vocabulary (from id 50257), like
        [MASK]; each is matched whole in a text, as <|endoftext|> is."""
        self._vocab = vocab
        self._merges = merges
        self.extra_special_tokens = [t for t in extra_special_tokens if t not in vocab]
        self._backend = tokenizers.Tokenizer(tokenizers.models.BPE(vocab, merges))
        # No space is added before the first word: GPT-2 encodes "Hello" as 15496, " Hello" as 18435.
        self._backend.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
        self._backend.decoder = tokenizers.decoders.ByteLevel()
        self.special_tokens = [END_OF_TEXT] if END_OF_TEXT in vocab else []
        self.special_tokens += self.extra_special_tokens
        # normalized=False: the special token is matched in the raw text, before any other step.
        # [MASK] takes the space before it (lstrip, as RoBERTa's <mask>): in "The [MASK] of" it
        # stands for " king", one token with its space, not for "king" after a lone space.
        self._backend.add_special_tokens(
            [
                tokenizers.AddedToken(
                    token, special=True, normalized=False, lstrip=token == MASK_TOKEN
                )
                for token in self.special_tokens
            ]
        )
        self.eos_id = vocab.get(END_OF_TEXT)
        self._vocab_size = self._backend.get_vocab_size(with_added_tokens=True)

    @classmethod
    def from_files(cls, vocab_json: str | Path, merges_txt: str | Path) -> GPT2Tokenizer:
        """The tokenizer of a `vocab.json` and a `merges.txt` in GPT-2's format."""
        return cls(*read_vocab_and_merges(vocab_json, merges_txt))

    @classmethod
    def from_pretrained(cls, name_or_dir: str | Path = "gpt2") -> GPT2Tokenizer:
        """GPT-2's tokenizer from a folder, or by model name (`gpt2`, `gpt2-medium`, ..., `openai-community/gpt2-xl`).

        A folder holds `vocab.json` and `merges.txt` (as gptlab and transformers 4 save them) or a
        `tokenizer.json` (as transformers 5 saves it). A name is resolved through the gptlab data
        registry: `GPTLAB_DATA`, then `GPTLAB_HOME`, then a download from the Hugging Face hub.
        """
        folder = Path(name_or_dir).expanduser()
        if folder.is_dir():
            if not (folder / VOCAB_FILE).is_file() and (folder / HF_TOKENIZER_FILE).is_file():
                return cls(*read_hf_tokenizer_json(folder / HF_TOKENIZER_FILE))
            return cls.from_files(folder / VOCAB_FILE, folder / MERGES_FILE)
        if str(name_or_dir) in GPT2_NAMES:
            from gptlab.data.sources import resolve

            return cls.from_files(
                resolve("gpt2-tokenizer", VOCAB_FILE), resolve("gpt2-tokenizer", MERGES_FILE)
            )
        raise TokenizerError(
            f"no GPT-2 tokenizer called {str(name_or_dir)!r}: give a folder holding vocab.json and "
            f"merges.txt, or one of the names {', '.join(GPT2_NAMES)}"
        )

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def special_ids(self) -> list[int]:
        return [self._backend.token_to_id(token) for token in self.special_tokens]

    @property
    def mask_id(self) -> int | None:
        return self._backend.token_to_id(MASK_TOKEN)

    def encode(self, text: str) -> list[int]:
        # `tokenizers` encodes one text on one core but a batch on all of them, so a long text (a
        # corpus) is encoded as a batch of chunks whose ids join to exactly the text's ids.
        ids, *more = self.encode_batch(split_for_parallel_encoding(text))
        for chunk_ids in more:
            ids.extend(chunk_ids)
        return ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        # The "fast" batch encoder skips each token's character offsets, which we never use: on
        # a long text, tracking them costs a third of the time.
        encodings = self._backend.encode_batch_fast(texts, add_special_tokens=False)
        return [encoding.ids for encoding in encodings]

    def decode(self, ids: Iterable[int]) -> str:
        return self._backend.decode(ids_as_list(ids, self.vocab_size), skip_special_tokens=False)

    def save(self, directory: str | Path) -> None:
        """Write `vocab.json`, `merges.txt`, `tokenizer.json` and `tokenizer_config.json`.

        transformers' `GPT2TokenizerFast.from_pretrained(directory)` reads the folder too: the
        config's fields besides `kind` are the ones transformers itself writes for GPT-2.
        """
        directory = Path(directory)
        write_vocab_and_merges(directory, self._vocab, self._merges)
        write_text(directory / HF_TOKENIZER_FILE, self._backend.to_str())
        write_config(
            directory,
            self.kind,
            tokenizer_class="GPT2Tokenizer",
            add_prefix_space=False,
            bos_token=END_OF_TEXT,
            eos_token=END_OF_TEXT,
            unk_token=END_OF_TEXT,
            **(
                {"extra_special_tokens": self.extra_special_tokens}
                if self.extra_special_tokens
                else {}
            ),
        )

    @classmethod
    def load(cls, directory: str | Path) -> GPT2Tokenizer:
        config = read_config(directory, kind=cls.kind)
        # Through from_pretrained, so a folder that transformers saved again (keeping our config
        # but writing only tokenizer.json) loads too.
        tokenizer = cls.from_pretrained(directory)
        extra = config.get("extra_special_tokens")
        return cls(tokenizer._vocab, tokenizer._merges, extra) if extra else tokenizer

    def fingerprint(self) -> str:
        return self._fingerprint

    @cached_property
    def _fingerprint(self) -> str:
        return bpe_fingerprint(self._vocab, self._merges, self.special_tokens)
