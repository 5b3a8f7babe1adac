"""gptlab.data.corpora: mixing documents, building a corpus once into GPTLAB_HOME, the real corpora."""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import pytest
from conftest import shared_file

from gptlab.data import corpora
from gptlab.data.corpora import CORPORA, Corpus, Document, build_corpus, mix_documents
from gptlab.data.gutenberg import strip_gutenberg
from gptlab.data.sources import REGISTRY, DataSource, RemoteFile
from gptlab.data.text import TokenData, resolve_text
from gptlab.errors import DataError
from gptlab.tokenizers import get_tokenizer

CAPTIONS = "A dog runs.\nTwo men sit.\nA girl sings.\n"


@pytest.fixture
def toy(tmp_path, monkeypatch) -> Path:
    """A registered dataset `toy` of one gzipped file in a GPTLAB_DATA folder, and a corpus
    `toy/captions` made from it."""
    content = gzip.compress(CAPTIONS.encode())
    shared = tmp_path / "shared"
    (shared / "toy").mkdir(parents=True)
    (shared / "toy" / "captions.gz").write_bytes(content)
    remote = RemoteFile(
        "captions.gz", "http://127.0.0.1:9/c", hashlib.sha256(content).hexdigest(), len(content)
    )
    monkeypatch.setitem(REGISTRY, "toy", DataSource("toy", "a toy", (remote,), "none", "none"))
    monkeypatch.setenv("GPTLAB_DATA", str(shared))
    corpus = Corpus("toy/captions", "toy captions", (Document("toy", "captions.gz"),))
    monkeypatch.setitem(CORPORA, corpus.name, corpus)
    return shared


def test_a_mix_puts_the_head_of_every_text_before_the_tail_of_every_text():
    first = "".join(f"a{i}\n" for i in range(10))
    second = "".join(f"b{i}\n" for i in range(10))
    assert mix_documents([first, second], 0.2).split("\n<|endoftext|>\n") == [
        "a0\na1\na2\na3\na4\na5\na6\na7",
        "b0\nb1\nb2\nb3\nb4\nb5\nb6\nb7",
        "a8\na9",
        "b8\nb9\n",
    ]


def test_a_mix_cuts_at_the_end_of_a_line_and_leaves_out_empty_pieces():
    mixed = mix_documents(["one line, no newline", "x\nyy\n"], 0.5)
    assert mixed == "one line, no newline\n<|endoftext|>\nx\n<|endoftext|>\nyy\n"


def test_a_corpus_is_built_into_gptlab_home_named_by_its_recipe(toy):
    path = build_corpus("toy/captions")
    assert path.read_text() == CAPTIONS  # gunzipped
    assert path.parent == Path(os.environ["GPTLAB_HOME"]) / "corpora"
    assert path.name.startswith("toy-captions-")
    assert list(path.parent.iterdir()) == [path]  # no temporary file left beside it


def test_a_built_corpus_is_reused_without_reading_its_inputs(toy):
    path = build_corpus("toy/captions")
    (toy / "toy" / "captions.gz").unlink()
    assert build_corpus("toy/captions") == path


def test_a_changed_recipe_builds_a_new_text(toy, monkeypatch):
    path = build_corpus("toy/captions")
    monkeypatch.setattr(corpora, "RECIPE_VERSION", corpora.RECIPE_VERSION + 1)
    assert build_corpus("toy/captions") != path


def test_an_unknown_corpus_error_lists_the_known_ones():
    with pytest.raises(DataError, match="unknown corpus 'poetry/keats'.*poetry/whitman"):
        build_corpus("poetry/keats")


def test_data_may_name_a_corpus(toy):
    assert resolve_text("toy/captions") == build_corpus("toy/captions")


@pytest.mark.parametrize(
    "name, filename",
    [("poetry/milton", "milton-paradise.txt"), ("poetry/blake", "blake-poems.txt")],
)
def test_a_poem_corpus_is_its_file_without_the_gutenberg_header(name, filename):
    text = shared_file("poetry", filename).read_text(encoding="utf-8")
    assert build_corpus(name).read_text(encoding="utf-8") == strip_gutenberg(text)


def test_multi30k_en_is_the_29000_english_training_captions():
    with gzip.open(shared_file("multi30k", "train.en.gz"), "rt", encoding="utf-8") as file:
        captions = file.read()
    text = build_corpus("multi30k/en").read_text(encoding="utf-8")
    assert text == captions and len(text.splitlines()) == 29_000


def test_english_mix_validation_split_holds_the_end_of_every_source(gpt2_tokenizer_dir):
    for document in CORPORA["english-mix"].documents:
        shared_file(document.dataset, document.filename)  # skip unless every source is there
    tokenizer = get_tokenizer("gpt2")
    data = TokenData.from_file(build_corpus("english-mix"), tokenizer)
    val = tokenizer.decode(data.val.tolist())
    for document in CORPORA["english-mix"].documents:
        assert document.read().rstrip().splitlines()[-1] in val, document.filename
    # Five held-out tails, four separators: the split starts inside the first tail, not before it.
    assert val.count("<|endoftext|>") == 4
