"""Parallel text for translation: sentences paired with their translations.

- `load_multi30k(src, tgt, split)`: Multi30K task 1 (Elliott et al. 2016; French: Elliott et al.
  2017), image captions written in English and translated into German and French, aligned line
  by line: 29,000 training pairs, 1,014 validation pairs and the 1,000 pairs of the 2016 Flickr
  test set (`test_2016_flickr`), the test set translation papers and tutorials report on. Its
  files come from the data registry (`gptlab.data.sources`), so they are found in `GPTLAB_DATA`,
  or `GPTLAB_HOME`, or downloaded, and always checked against their sha256.
- `load_parallel(source, target)`: your own pairs, as two aligned text files (line i of one is
  the translation of line i of the other), or as one .tsv / .csv / .jsonl file with a source and
  a target column.

Both return a list of `(source sentence, target sentence)` tuples, with surrounding whitespace
removed. A pair with an empty side is an error that names the file and line: it teaches the model
nothing but to stop at once, and it usually means the two files have slipped out of alignment.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from gptlab.errors import DataError

MULTI30K = "multi30k"
MULTI30K_LANGUAGES = ("en", "de", "fr")
# A split's name in gptlab -> the stem of its files in the dataset (`<stem>.<language>.gz`).
MULTI30K_SPLITS = {"train": "train", "val": "val", "test": "test_2016_flickr"}

Pairs = list[tuple[str, str]]


def load_multi30k(src_lang: str, tgt_lang: str, split: str = "train") -> Pairs:
    """The Multi30K pairs of `split` ("train", "val" or "test") from `src_lang` into `tgt_lang`."""
    for language in (src_lang, tgt_lang):
        if language not in MULTI30K_LANGUAGES:
            raise DataError(
                f"Multi30K has no language {language!r}; its languages: {', '.join(MULTI30K_LANGUAGES)}"
            )
    if src_lang == tgt_lang:
        raise DataError(f"the source and target languages are both {src_lang!r}: choose two")
    if split not in MULTI30K_SPLITS:
        raise DataError(
            f"Multi30K has no split {split!r}; its splits: {', '.join(MULTI30K_SPLITS)} "
            f"(test is {MULTI30K_SPLITS['test']})"
        )
    from gptlab.data.sources import resolve

    stem = MULTI30K_SPLITS[split]
    source_path = resolve(MULTI30K, f"{stem}.{src_lang}.gz")
    target_path = resolve(MULTI30K, f"{stem}.{tgt_lang}.gz")
    return pair_lines(read_lines(source_path), read_lines(target_path), source_path, target_path)


def load_parallel(
    source: str | Path,
    target: str | Path | None = None,
    source_column: str = "source",
    target_column: str = "target",
) -> Pairs:
    """Pairs from two aligned text files (`source` and `target`, one sentence a line), or, when
    `target` is None, from the columns of one .tsv, .csv or .jsonl file (with a header row)."""
    if target is not None:
        source, target = Path(source).expanduser(), Path(target).expanduser()
        return pair_lines(read_lines(source), read_lines(target), source, target)
    path = Path(source).expanduser()
    if path.suffix.lower() not in (".tsv", ".csv", ".jsonl", ".json"):
        raise DataError(
            f"{path}: give two aligned text files (source and target), or one .tsv, .csv or "
            ".jsonl file with a source and a target column"
        )
    from gptlab.data.labelled import read_rows

    rows = read_rows(path)
    if not rows:
        raise DataError(f"{path} has no rows")
    for column in (source_column, target_column):
        if column not in rows[0]:
            known = ", ".join(map(str, rows[0])) or "none"
            raise DataError(
                f"{path} has no column {column!r} (its columns: {known}); "
                "name the right ones with the source and target column options"
            )
    pairs = []
    for number, row in enumerate(rows, 1):
        pair = (
            str(row.get(source_column) or "").strip(),
            str(row.get(target_column) or "").strip(),
        )
        for side, text in zip((source_column, target_column), pair):
            if not text:
                raise DataError(f"{path}, row {number}: the {side} is empty")
        pairs.append(pair)
    return pairs


def read_lines(path: str | Path) -> list[str]:
    """The lines of a UTF-8 text file (gunzipped when it ends in .gz), without their line ends.

    A last line ending in a newline does not make an extra empty line; every other line is kept,
    empty or not, so line i is still line i of the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no file at {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read {path}: {error}") from None
    # "\n", "\r\n" and "\r" end lines; str.splitlines would also cut at form feeds and
    # U+2028, which can sit inside a sentence.
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def pair_lines(
    sources: list[str], targets: list[str], source_name: str | Path, target_name: str | Path
) -> Pairs:
    """Line i of `sources` with line i of `targets`, stripped; an empty line or unequal counts is
    a DataError naming the file (and the line)."""
    if len(sources) != len(targets):
        raise DataError(
            f"{source_name} has {len(sources):,} lines but {target_name} has {len(targets):,}: "
            "aligned files need one line each per sentence pair"
        )
    if not sources:
        raise DataError(f"{source_name} and {target_name} are empty")
    pairs = []
    for number, (source, target) in enumerate(zip(sources, targets), 1):
        source, target = source.strip(), target.strip()
        for name, text in ((source_name, source), (target_name, target)):
            if not text:
                raise DataError(f"{name}, line {number}: the line is empty")
        pairs.append((source, target))
    return pairs
