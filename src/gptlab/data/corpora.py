"""Named English corpora made from registered datasets: `--data poetry/whitman`, `--data english-mix`.

A corpus is a recipe: some registered files, each read as text and cleaned (the poems lose their
Project Gutenberg header and footer, the captions are gunzipped). One file makes a single text;
several make a mix of documents separated by GPT-2's `<|endoftext|>` on a line of its own, which
GPT-2's tokenizer encodes as the one id 50256 and a character tokenizer as its 13 characters.

`build_corpus(name)` writes the text once, atomically, to
`GPTLAB_HOME/corpora/<name>-<key>.txt` and returns that path: never beside the read-only sources.
The key hashes the recipe with the sha256 of every input, which the registry pins and `resolve`
checks, so a built corpus is found again without reading its inputs, and a changed recipe gets a
new file. `english-mix` is the corpus of the `gpt2-mini` preset, gptlab's local GPT-2-BPE base.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gptlab.atomic import atomic_write
from gptlab.data.gutenberg import strip_gutenberg
from gptlab.data.sources import get_source, gptlab_home, resolve
from gptlab.errors import DataError
from gptlab.tokenizers.bpe_files import END_OF_TEXT

# Bump when the way a corpus is made from its inputs changes, so texts built before are not reused.
RECIPE_VERSION = 1
# `TokenData` validates on the last `val_fraction` of the tokens (0.1 unless asked otherwise), so
# a mix puts the first 90% of every document first and the last 10% of every document after:
# its validation split then holds some of each source, in about their share of the whole, rather
# than the end of the last one. (A smaller val_fraction sees only the later documents' tails.)
HELD_OUT_FRACTION = 0.1


@dataclass(frozen=True)
class Document:
    """One registered file read as UTF-8 text (gunzipped if it ends in .gz), then cleaned."""

    dataset: str
    filename: str
    clean: Callable[[str], str] | None = None

    def read(self) -> str:
        path = resolve(self.dataset, self.filename)
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as file:
            text = file.read()
        return self.clean(text) if self.clean else text

    def recipe(self) -> dict:
        return {
            "file": f"{self.dataset}/{self.filename}",
            "sha256": get_source(self.dataset).file(self.filename).sha256,
            "clean": self.clean.__name__ if self.clean else None,
        }


@dataclass(frozen=True)
class Corpus:
    """A named text made from one document, or a mix of several (see `mix_documents`)."""

    name: str
    description: str
    documents: tuple[Document, ...]

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(document.dataset for document in self.documents))

    def path(self) -> Path:
        """Where the built text is kept, whether or not it has been built yet."""
        recipe = {
            "version": RECIPE_VERSION,
            "held_out_fraction": HELD_OUT_FRACTION,
            "documents": [document.recipe() for document in self.documents],
        }
        key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
        return gptlab_home() / "corpora" / f"{self.name.replace('/', '-')}-{key[:16]}.txt"

    def text(self) -> str:
        texts = [document.read() for document in self.documents]
        if len(texts) == 1:
            return texts[0]
        return mix_documents(texts, HELD_OUT_FRACTION)


def mix_documents(texts: list[str], held_out_fraction: float) -> str:
    """The first lines of each text, then the last `held_out_fraction` of each, as documents.

    Each text is cut at the first line start at or after its `1 - held_out_fraction` point,
    counted in characters, so both pieces are whole lines. Every piece is a document, and
    `<|endoftext|>` stands on its own line between two documents.
    """
    heads, tails = [], []
    for text in texts:
        point = round(len(text) * (1 - held_out_fraction))
        line_end = text.find("\n", max(point - 1, 0))
        cut = len(text) if line_end == -1 else line_end + 1
        heads.append(text[:cut])
        tails.append(text[cut:])
    pieces = [piece.strip("\n") for piece in heads + tails]
    return f"\n{END_OF_TEXT}\n".join(piece for piece in pieces if piece) + "\n"


_SHAKESPEARE = Document("tinyshakespeare", "input.txt")
_MILTON = Document("poetry", "milton-paradise.txt", strip_gutenberg)
_WHITMAN = Document("poetry", "whitman-leaves.txt", strip_gutenberg)
_BLAKE = Document("poetry", "blake-poems.txt", strip_gutenberg)
_CAPTIONS = Document("multi30k", "train.en.gz")

_CORPORA = (
    Corpus(
        "poetry/milton", "Milton's Paradise Lost without Project Gutenberg's header", (_MILTON,)
    ),
    Corpus(
        "poetry/whitman",
        "Whitman's Leaves of Grass without Project Gutenberg's header",
        (_WHITMAN,),
    ),
    Corpus("poetry/blake", "Blake's Poems without Project Gutenberg's header", (_BLAKE,)),
    Corpus(
        "multi30k/en", "the 29,000 English training captions of Multi30K, one a line", (_CAPTIONS,)
    ),
    Corpus(
        "english-mix",
        "TinyShakespeare, the three poems and the Multi30K English captions: the gpt2-mini corpus",
        (_SHAKESPEARE, _MILTON, _WHITMAN, _BLAKE, _CAPTIONS),
    ),
)

CORPORA: dict[str, Corpus] = {corpus.name: corpus for corpus in _CORPORA}


def build_corpus(name: str) -> Path:
    """The path of the named corpus's text, written into GPTLAB_HOME the first time it is asked for."""
    try:
        corpus = CORPORA[name]
    except KeyError:
        raise DataError(f"unknown corpus {name!r}; known corpora: {', '.join(CORPORA)}") from None
    path = corpus.path()
    if not path.is_file():
        # Processes that build at once (the ranks of a DDP run) each write a temporary file of
        # the same text, and each rename leaves one complete copy.
        text = corpus.text()
        with atomic_write(path) as out:
            out.write(text.encode("utf-8"))
    return path
