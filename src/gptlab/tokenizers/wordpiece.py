"""BERT's WordPiece tokenizer, read from a BERT folder, so an imported BERT fills masks and
classifies with the vocabulary it was trained on.

WordPiece (Schuster and Nakajima 2012; Wu et al. 2016, 4.1; Devlin et al. 2019, 3) cuts text
into words at spaces and punctuation, then each word into the longest pieces of its vocabulary,
left to right: "xylophone" might be "xylo", "##phone", where "##" marks a piece that continues
a word. A word that cannot be cut is one [UNK]. BERT's tokenizers also lower-case and strip
accents first (the "uncased" models), and frame every text as `[CLS] text [SEP]`: [CLS] is the
position a classifier reads, [SEP] ends a segment.

gptlab does not write WordPiece itself: the `tokenizers` library runs it, from the folder's
`tokenizer.json` (what transformers' BertTokenizerFast and `tokenizers`' BertWordPieceTokenizer
save) or, failing that, its `vocab.txt`. `encode` gives the ids BertTokenizerFast gives, [CLS]
and [SEP] included; `decode` leaves out the framing ([CLS], [SEP], [PAD]) but keeps [MASK] and
[UNK], so a text with a blank still shows it.
"""

from __future__ import annotations

import json
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
    short_digest,
    write_config,
    write_text,
)

PAD, UNK, CLS, SEP = "[PAD]", "[UNK]", "[CLS]", "[SEP]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK_TOKEN)
HF_TOKENIZER_FILE = "tokenizer.json"
VOCAB_FILE = "vocab.txt"


class WordPieceTokenizer(Tokenizer):
    """BERT's WordPiece on the `tokenizers` library: ids exactly BertTokenizerFast's."""

    kind = "wordpiece"
    eos_id = None  # BERT separates segments with [SEP], inside each text, not documents

    def __init__(self, backend: tokenizers.Tokenizer):
        vocab = backend.get_vocab(with_added_tokens=True)
        missing = [token for token in SPECIAL_TOKENS if token not in vocab]
        if missing:
            raise TokenizerError(f"a BERT WordPiece vocabulary needs {', '.join(missing)}")
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self._mask_id = (
            vocab[token] for token in SPECIAL_TOKENS
        )
        # A tokenizer.json that `tokenizers` trained has no framing yet; BERT's always has it.
        if backend.post_processor is None:
            backend.post_processor = tokenizers.processors.BertProcessing(
                (SEP, self.sep_id), (CLS, self.cls_id)
            )
        # [MASK] and the others must stay whole, never cut into "[", "mask", "]".
        backend.add_special_tokens(list(SPECIAL_TOKENS))
        # A hub tokenizer.json may cut at 512 tokens or pad: a corpus is encoded whole, and
        # the classifier's batches do their own cutting and padding.
        backend.no_truncation()
        backend.no_padding()
        self._backend = backend
        self._vocab_size = backend.get_vocab_size(with_added_tokens=True)

    @classmethod
    def from_bert_folder(cls, folder: str | Path) -> WordPieceTokenizer:
        """The WordPiece tokenizer of a Hugging Face BERT folder: its tokenizer.json, else its
        vocab.txt (lower-cased unless its tokenizer_config.json says do_lower_case: false)."""
        folder = Path(folder)
        if (folder / HF_TOKENIZER_FILE).is_file():
            return cls(_read_backend(folder / HF_TOKENIZER_FILE))
        if (folder / VOCAB_FILE).is_file():
            from tokenizers.implementations import BertWordPieceTokenizer

            settings = folder / "tokenizer_config.json"
            values = json.loads(settings.read_text()) if settings.is_file() else {}
            lowercase = values.get("do_lower_case", True)
            try:
                built = BertWordPieceTokenizer(str(folder / VOCAB_FILE), lowercase=lowercase)
            except Exception as error:  # the Rust library raises plain Exceptions
                raise TokenizerError(f"cannot read {folder / VOCAB_FILE}: {error}") from None
            return cls(built._tokenizer)
        raise TokenizerError(
            f"{folder} has no tokenizer: gptlab reads a gptlab tokenizer, or BERT's WordPiece "
            f"from {HF_TOKENIZER_FILE} or {VOCAB_FILE}"
        )

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def mask_id(self) -> int:
        return self._mask_id

    @property
    def special_ids(self) -> list[int]:
        return [self.pad_id, self.unk_id, self.cls_id, self.sep_id, self._mask_id]

    def encode(self, text: str) -> list[int]:
        """`[CLS]` + the WordPiece ids of `text` + `[SEP]`, as BertTokenizerFast encodes it."""
        return self._backend.encode(text).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self._backend.encode_batch_fast(texts)]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`, pieces joined into words, without [CLS], [SEP] and [PAD]."""
        framing = {self.pad_id, self.cls_id, self.sep_id}
        ids = [i for i in ids_as_list(ids, self.vocab_size) if i not in framing]
        return self._backend.decode(ids, skip_special_tokens=False)

    def save(self, directory: str | Path) -> None:
        """Write `tokenizer.json`, and a `tokenizer_config.json` that both gptlab and
        transformers' BertTokenizerFast read."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_text(directory / HF_TOKENIZER_FILE, self._backend.to_str(pretty=True))
        write_config(
            directory,
            self.kind,
            tokenizer_class="BertTokenizer",
            unk_token=UNK,
            sep_token=SEP,
            pad_token=PAD,
            cls_token=CLS,
            mask_token=MASK_TOKEN,
        )

    @classmethod
    def load(cls, directory: str | Path) -> WordPieceTokenizer:
        directory = Path(directory)
        read_config(directory, kind=cls.kind)
        return cls(_read_backend(directory / HF_TOKENIZER_FILE))

    def fingerprint(self) -> str:
        return self._fingerprint

    @cached_property
    def _fingerprint(self) -> str:
        return short_digest(self._backend.to_str())


def _read_backend(path: Path) -> tokenizers.Tokenizer:
    """A `tokenizers` tokenizer.json whose model is WordPiece."""
    try:
        backend = tokenizers.Tokenizer.from_file(str(path))
    except Exception as error:  # the Rust library raises plain Exceptions for bad files
        if not path.is_file():
            raise TokenizerError(f"tokenizer file not found: {path}") from None
        raise TokenizerError(f"cannot read tokenizer file {path}: {error}") from None
    model = type(backend.model).__name__
    if model != "WordPiece":
        raise TokenizerError(f"{path} is a {model} tokenizer, not BERT's WordPiece")
    return backend
