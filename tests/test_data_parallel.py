"""gptlab.data.parallel: Multi30K through the registry, and your own aligned files or columns."""

from __future__ import annotations

import gzip
import hashlib
import json

import pytest
from conftest import shared_file

from gptlab.data.parallel import MULTI30K_SPLITS, load_multi30k, load_parallel, read_lines
from gptlab.data.sources import REGISTRY, DataSource, RemoteFile
from gptlab.errors import DataError


@pytest.fixture
def multi30k_data():
    """The shared Multi30K folder (the test skips without it)."""
    return shared_file("multi30k", "train.en.gz").parent


def test_multi30k_test_split_is_the_2016_flickr_test_set_aligned_line_by_line(multi30k_data):
    pairs = load_multi30k("de", "en", "test")
    assert len(pairs) == 1000
    with gzip.open(multi30k_data / "test_2016_flickr.en.gz", "rt", encoding="utf-8") as file:
        first_english = file.readline().strip()
    with gzip.open(multi30k_data / "test_2016_flickr.de.gz", "rt", encoding="utf-8") as file:
        first_german = file.readline().strip()
    assert pairs[0] == (first_german, first_english)


def test_multi30k_splits_have_their_published_sizes(multi30k_data):
    assert len(load_multi30k("en", "fr", "val")) == 1014
    train = load_multi30k("en", "de", "train")
    assert len(train) == 29_000
    assert train[0] == (
        "Two young, White males are outside near many bushes.",
        "Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche.",
    )


def test_multi30k_direction_swaps_the_sides(multi30k_data):
    forward, backward = load_multi30k("de", "fr", "val"), load_multi30k("fr", "de", "val")
    assert [(target, source) for source, target in forward] == backward


@pytest.mark.parametrize(
    ("src", "tgt", "split", "message"),
    [
        ("de", "es", "train", "no language 'es'"),
        ("en", "en", "train", "both 'en'"),
        ("de", "en", "dev", "no split 'dev'"),
    ],
)
def test_multi30k_refuses_unknown_languages_and_splits(src, tgt, split, message):
    with pytest.raises(DataError, match=message):
        load_multi30k(src, tgt, split)


def test_multi30k_missing_file_names_it_and_where_to_put_it(tmp_path, monkeypatch):
    # A registry entry whose file is nowhere and whose URL cannot be reached.
    remote = RemoteFile("val.de.gz", "http://127.0.0.1:9/val.de.gz", "0" * 64, 1)
    english = RemoteFile("val.en.gz", "http://127.0.0.1:9/val.en.gz", "0" * 64, 1)
    source = DataSource("multi30k", "missing", (remote, english), "none", "none")
    monkeypatch.setitem(REGISTRY, "multi30k", source)
    monkeypatch.setenv("GPTLAB_DATA", str(tmp_path / "nothing"))
    with pytest.raises(DataError, match=r"multi30k/val\.de\.gz"):
        load_multi30k("de", "en", "val")


def test_multi30k_split_names_map_to_the_dataset_files():
    registered = {remote.name for remote in REGISTRY["multi30k"].files}
    for stem in MULTI30K_SPLITS.values():
        assert {f"{stem}.{language}.gz" for language in ("en", "de", "fr")} <= registered


def test_a_corrupt_multi30k_copy_is_refused(tmp_path, monkeypatch):
    good = gzip.compress(b"Ein Hund.\n")
    shared = tmp_path / "shared"
    (shared / "multi30k").mkdir(parents=True)
    (shared / "multi30k" / "val.de.gz").write_bytes(good)
    (shared / "multi30k" / "val.en.gz").write_bytes(b"not what the registry says")
    files = (
        RemoteFile(
            "val.de.gz", "http://127.0.0.1:9/a", hashlib.sha256(good).hexdigest(), len(good)
        ),
        RemoteFile(
            "val.en.gz", "http://127.0.0.1:9/b", hashlib.sha256(good).hexdigest(), len(good)
        ),
    )
    monkeypatch.setitem(REGISTRY, "multi30k", DataSource("multi30k", "x", files, "-", "-"))
    monkeypatch.setenv("GPTLAB_DATA", str(shared))
    with pytest.raises(DataError, match="corrupt"):
        load_multi30k("de", "en", "val")


# -- your own files ------------------------------------------------------------------------


def test_two_aligned_files_pair_line_by_line(tmp_path):
    (tmp_path / "a.de").write_text("Ein Hund.\r\n  Zwei Katzen. \n")
    (tmp_path / "a.en").write_bytes(gzip.compress(b"A dog.\nTwo cats.\n"))
    (tmp_path / "a.en").rename(tmp_path / "a.en.gz")
    pairs = load_parallel(tmp_path / "a.de", tmp_path / "a.en.gz")
    assert pairs == [("Ein Hund.", "A dog."), ("Zwei Katzen.", "Two cats.")]


def test_files_of_different_lengths_are_refused_with_both_counts(tmp_path):
    (tmp_path / "a.de").write_text("Ein Hund.\nZwei Katzen.\n")
    (tmp_path / "a.en").write_text("A dog.\n")
    with pytest.raises(DataError, match=r"has 2 lines but .*a\.en has 1"):
        load_parallel(tmp_path / "a.de", tmp_path / "a.en")


def test_an_empty_line_is_refused_with_its_number(tmp_path):
    (tmp_path / "a.de").write_text("Ein Hund.\n \nDrei.\n")
    (tmp_path / "a.en").write_text("A dog.\nTwo cats.\nThree.\n")
    with pytest.raises(DataError, match=r"a\.de, line 2: the line is empty"):
        load_parallel(tmp_path / "a.de", tmp_path / "a.en")


def test_a_missing_file_is_a_data_error(tmp_path):
    (tmp_path / "a.de").write_text("Ein Hund.\n")
    with pytest.raises(DataError, match="no file at"):
        load_parallel(tmp_path / "a.de", tmp_path / "missing.en")


def test_tsv_and_jsonl_columns(tmp_path):
    (tmp_path / "pairs.tsv").write_text("de\ten\nEin Hund.\tA dog.\n")
    assert load_parallel(tmp_path / "pairs.tsv", source_column="de", target_column="en") == [
        ("Ein Hund.", "A dog.")
    ]
    rows = [{"source": "Ein Hund.", "target": "A dog."}, {"source": "Drei.", "target": "Three."}]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert load_parallel(tmp_path / "pairs.jsonl") == [
        ("Ein Hund.", "A dog."),
        ("Drei.", "Three."),
    ]


def test_a_missing_column_is_named_with_the_columns_there_are(tmp_path):
    (tmp_path / "pairs.tsv").write_text("de\ten\nEin Hund.\tA dog.\n")
    with pytest.raises(DataError, match=r"no column 'source' \(its columns: de, en\)"):
        load_parallel(tmp_path / "pairs.tsv")


def test_an_empty_cell_is_refused_with_its_row(tmp_path):
    rows = [{"source": "Ein Hund.", "target": "A dog."}, {"source": "Drei.", "target": ""}]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(DataError, match="row 2: the target is empty"):
        load_parallel(tmp_path / "pairs.jsonl")


def test_one_plain_text_file_is_refused(tmp_path):
    (tmp_path / "a.txt").write_text("Ein Hund.\n")
    with pytest.raises(DataError, match="two aligned text files"):
        load_parallel(tmp_path / "a.txt")


def test_read_lines_keeps_inner_empty_lines_and_line_numbers(tmp_path):
    (tmp_path / "a.txt").write_text("one\n\nthree\n")
    assert read_lines(tmp_path / "a.txt") == ["one", "", "three"]
