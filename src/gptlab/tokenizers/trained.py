"""A byte-level BPE trained on your own text with the `tokenizers` library, with the special
tokens a sequence-to-sequence model needs: `<pad>`, `<bos>`, `<eos>` and `<unk>`.

GPT-2's tokenizer (`gpt2.py`) is a fixed 50,257-token vocabulary learned on web text; a translation
model on Multi30K wants a small vocabulary learned on its own captions, in its own languages
(German, French), so that common words are one token each and the embedding tables stay small.
This is the same algorithm as GPT-2's (Sennrich et al. 2016; Radford et al. 2019, section 2.2):
UTF-8 bytes as base symbols, so no text is ever unknown, then the most frequent adjacent pairs
merged one at a time, learned here by the Rust trainer in about a second on 58,000 sentences.

Two choices differ from GPT-2's, both for sentences rather than running text:

- Every text is encoded as if it began with a space (the `Prepend(" ")` normalizer), so "Ein" at
  the start of a sentence is the same token as " Ein" inside one; the decoder strips that one
  space again, so `decode(encode(text)) == text` for any text.
- The text is NFC-normalized first, so "ä" typed as one code point or as "a" plus a combining
  diaeresis is the same two bytes.

Four special tokens take ids 0-3: `<pad>` fills a batch to its longest sequence, `<bos>` starts
the decoder's input, `<eos>` ends a sequence, and `<unk>` is there for the `tokenizers` BPE model
to name, though a byte-level vocabulary never produces it. `encode` adds none of them: the
sequence-to-sequence data decides where they go.

A saved tokenizer is the `tokenizers` library's own `tokenizer.json` (Hugging Face
`PreTrainedTokenizerFast(tokenizer_file=...)` reads it) plus gptlab's `tokenizer_config.json`.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property
from pathlib import Path

import tokenizers

from gptlab.errors import TokenizerError
from gptlab.tokenizers.base import (
    Tokenizer,
    ids_as_list,
    read_config,
    short_digest,
    write_config,
    write_text,
)

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)  # ids 0, 1, 2, 3, in this order
HF_TOKENIZER_FILE = "tokenizer.json"
# The smallest vocabulary worth training: the 256 byte symbols, the special tokens, some merges.
MIN_VOCAB_SIZE = 256 + len(SPECIAL_TOKENS) + 1


class TrainedBPE(Tokenizer):
    """A byte-level BPE learned from a corpus with `tokenizers`, with <pad> <bos> <eos> <unk> as ids 0-3."""

    kind = "trained-bpe"

    def __init__(self, backend: tokenizers.Tokenizer):
        vocab = backend.get_vocab(with_added_tokens=True)
        missing = [token for token in SPECIAL_TOKENS if token not in vocab]
        if missing:
            raise TokenizerError(f"a trained BPE needs the special tokens {missing}")
        self._backend = backend
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = (vocab[t] for t in SPECIAL_TOKENS)
        self._vocab_size = backend.get_vocab_size(with_added_tokens=True)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> TrainedBPE:
        """Learn a vocabulary of at most `vocab_size` ids from `texts` (an iterable of sentences).

        The vocabulary comes out smaller when the texts hold fewer pairs seen `min_frequency`
        times than there is room for merges.
        """
        if vocab_size < MIN_VOCAB_SIZE:
            raise TokenizerError(
                f"vocab_size {vocab_size} is too small: a byte-level BPE needs the 256 byte tokens "
                f"and {len(SPECIAL_TOKENS)} special tokens, so at least {MIN_VOCAB_SIZE}"
            )
        backend = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token=UNK))
        backend.normalizer = tokenizers.normalizers.Sequence(
            [tokenizers.normalizers.NFC(), tokenizers.normalizers.Prepend(" ")]
        )
        backend.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = tokenizers.decoders.Sequence(
            [tokenizers.decoders.ByteLevel(), tokenizers.decoders.Strip(" ", 1, 0)]
        )
        trainer = tokenizers.trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS),
            # All 256 byte symbols, even those the corpus lacks, so any text can be encoded.
            initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        counted = _CountingIterator(texts)
        backend.train_from_iterator(counted, trainer)
        if not counted.nonempty:
            raise TokenizerError("cannot train a tokenizer on no text: every sentence is empty")
        return cls(backend)

    @property
    def special_ids(self) -> list[int]:
        return [self.pad_id, self.bos_id, self.eos_id, self.unk_id]

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def encode(self, text: str) -> list[int]:
        return self._backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        # Batches are encoded on every core; offsets are skipped, as in GPT2Tokenizer.
        encodings = self._backend.encode_batch_fast(texts, add_special_tokens=False)
        return [encoding.ids for encoding in encodings]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """The text of `ids`; with `skip_special_tokens`, <pad> <bos> <eos> <unk> are left out."""
        ids = ids_as_list(ids, self.vocab_size)
        if skip_special_tokens:
            ids = [i for i in ids if i not in self.special_ids]
        return self._backend.decode(ids, skip_special_tokens=False)

    def id_to_token(self, index: int) -> str:
        """The vocabulary entry of one id, in the byte alphabet (a space is "Ġ")."""
        return self._backend.id_to_token(index)

    def save(self, directory: str | Path) -> None:
        """Write `tokenizer.json` (the `tokenizers` library's format) and `tokenizer_config.json`."""
        directory = Path(directory)
        write_text(directory / HF_TOKENIZER_FILE, self._backend.to_str(pretty=True))
        # The fields besides `kind` are those transformers reads for PreTrainedTokenizerFast.
        write_config(
            directory,
            self.kind,
            tokenizer_class="PreTrainedTokenizerFast",
            pad_token=PAD,
            bos_token=BOS,
            eos_token=EOS,
            unk_token=UNK,
        )

    @classmethod
    def load(cls, directory: str | Path) -> TrainedBPE:
        directory = Path(directory)
        read_config(directory, kind=cls.kind)
        path = directory / HF_TOKENIZER_FILE
        try:
            backend = tokenizers.Tokenizer.from_file(str(path))
        except Exception as error:  # the Rust library raises plain Exceptions for bad files
            if not path.is_file():
                raise TokenizerError(f"tokenizer file not found: {path}") from None
            raise TokenizerError(f"cannot read tokenizer file {path}: {error}") from None
        return cls(backend)

    def fingerprint(self) -> str:
        return self._fingerprint

    @cached_property
    def _fingerprint(self) -> str:
        return short_digest(self._backend.to_str())


class _CountingIterator:
    """Passes texts through to the trainer and notes whether any of them held a character."""

    def __init__(self, texts: Iterable[str]):
        self.texts = iter(texts)
        self.nonempty = False

    def __iter__(self):
        return self

    def __next__(self) -> str:
        text = next(self.texts)
        self.nonempty = self.nonempty or bool(text)
        return text
