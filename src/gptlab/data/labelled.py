"""Labelled text for classification: reading it, splitting it, and batches of padded token ids.

- `load_labelled(spec)`: the SMS Spam Collection by name (`sms-spam`), or any CSV, TSV or JSONL
  file with a text column and a label column. Every problem a file can have (a missing column,
  an empty text, a single class) is one `DataError` that names the row.
- `split_labelled(data, ...)`: train / validation / test, optionally balanced by undersampling.
  With the defaults it reproduces, example for example, the split of the published reference
  (Raschka 2024, chapter 6: ham undersampled to the 747 spam with seed 123, shuffled with seed
  123, cut 70/10/20), which `pandas.DataFrame.sample` makes from NumPy's legacy `RandomState`.
- `ClassificationBatches`: batches padded to their longest sequence, training batches drawn by
  `(step, index)` like the language-model data, so a resumed or multi-process run sees exactly
  the batches of an uninterrupted one.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gptlab.data.epochs import EpochBatches
from gptlab.errors import DataError

SPLITS = ("train", "val", "test")
REFERENCE_FRACTIONS = (0.7, 0.1, 0.2)
REFERENCE_SEED = 123
# Registered labelled datasets: their registry name and how a row of theirs reads.
SMS_SPAM = "sms-spam"


@dataclass
class LabelledTexts:
    """Texts and their labels (as written in the source), in the source's order."""

    texts: list[str]
    labels: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices) -> LabelledTexts:
        return LabelledTexts([self.texts[i] for i in indices], [self.labels[i] for i in indices])


# -- reading ------------------------------------------------------------------------------


def load_labelled(
    spec: str | Path, text_column: str = "text", label_column: str = "label", min_classes: int = 2
) -> LabelledTexts:
    """`sms-spam`, or a .csv, .tsv or .jsonl file with `text_column` and `label_column`.

    min_classes: the distinct labels it must have; training needs two, evaluation one.
    """
    if str(spec) == SMS_SPAM and not Path(spec).exists():
        from gptlab.data.sources import resolve

        return read_sms_spam(resolve(SMS_SPAM, "SMSSpamCollection"))
    path = Path(spec).expanduser()
    if not path.is_file():
        raise DataError(
            f"{spec} is neither a labelled file (.csv, .tsv, .jsonl) nor a labelled dataset ({SMS_SPAM})"
        )
    return _columns(read_rows(path), path, text_column, label_column, min_classes)


def read_rows(path: Path) -> list[dict]:
    """The rows of a .csv or .tsv file with a header, or of a .jsonl file, as dicts."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no file at {path}")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return _read_delimited(path, "\t" if suffix == ".tsv" else ",")
    if suffix in (".jsonl", ".json"):
        return _read_jsonl(path)
    raise DataError(f"{path}: unknown format {suffix!r}; use .csv, .tsv or .jsonl")


def write_rows(path: Path, rows: list[dict]) -> None:
    """Write dicts as a .csv, .tsv (a column for every key of any row) or .jsonl file, atomically."""
    from gptlab.atomic import atomic_write

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".jsonl"):
        raise DataError(f"{path}: unknown format {suffix!r}; use .csv, .tsv or .jsonl")
    text = io.StringIO()
    if suffix == ".jsonl":
        text.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    else:
        delimiter = "\t" if suffix == ".tsv" else ","
        # Every row's columns, in order of first appearance: rows read from JSONL may differ.
        columns = list(dict.fromkeys(key for row in rows for key in row))
        writer = csv.DictWriter(text, fieldnames=columns, delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    with atomic_write(path) as file:
        file.write(text.getvalue().encode("utf-8"))


def read_sms_spam(path: Path) -> LabelledTexts:
    """The SMS Spam Collection: one `label<TAB>text` line a message, no header.

    Read with the csv module's default quoting (a field that starts with a double quote runs
    to the closing one, across lines), which is how pandas reads it in the reference: 5,572
    messages rather than 5,574 lines.
    """
    with open(path, encoding="utf-8", newline="") as file:
        rows = list(csv.reader(file, delimiter="\t"))
    bad = next((i for i, row in enumerate(rows, 1) if len(row) != 2), None)
    if bad is not None:
        raise DataError(f"{path}, row {bad}: expected `label<TAB>text`")
    data = LabelledTexts([row[1] for row in rows], [row[0] for row in rows])
    return check_labelled(data, str(path))


def _read_delimited(path: Path, delimiter: str) -> list[dict]:
    try:
        # utf-8-sig: spreadsheet programs save "CSV UTF-8" with a byte-order mark, which would
        # otherwise become part of the first column's name.
        with open(path, encoding="utf-8-sig", newline="") as file:
            return list(csv.DictReader(file, delimiter=delimiter))
    except (UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"cannot read {path}: {error}") from None


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as error:
        raise DataError(f"cannot read {path}: {error}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}, line {number}: not JSON ({error.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}, line {number}: expected a JSON object")
        rows.append(row)
    return rows


def _columns(
    rows: list[dict], path: Path, text_column: str, label_column: str, min_classes: int
) -> LabelledTexts:
    if not rows:
        raise DataError(f"{path} has no rows")
    for column in (text_column, label_column):
        if column not in rows[0]:
            known = ", ".join(map(str, rows[0])) or "none"
            raise DataError(
                f"{path} has no column {column!r} (its columns: {known}); "
                "name the right ones with --text-column and --label-column"
            )
    texts, labels = [], []
    for number, row in enumerate(rows, 1):
        text, label = row.get(text_column), row.get(label_column)
        if label is None or str(label).strip() == "":
            raise DataError(f"{path}, row {number}: the label is missing")
        texts.append("" if text is None else str(text))
        labels.append(str(label).strip())
    return check_labelled(LabelledTexts(texts, labels), str(path), min_classes)


def check_labelled(data: LabelledTexts, source: str, min_classes: int = 2) -> LabelledTexts:
    """Refuse empty texts, and fewer than `min_classes` distinct labels."""
    if not len(data):
        raise DataError(f"{source} has no examples")
    empty = next((i for i, text in enumerate(data.texts, 1) if not text.strip()), None)
    if empty is not None:
        raise DataError(f"{source}, row {empty}: the text is empty")
    classes = sorted(set(data.labels))
    if len(classes) < min_classes:
        raise DataError(
            f"{source} has only one class ({classes[0]!r}): a classifier needs at least two"
        )
    return data


def label_names(labels: list[str]) -> list[str]:
    """The classes in a fixed order: numerically when every label is an integer, else by name."""
    classes = set(labels)
    if all(_is_int(label) for label in classes):
        return sorted(classes, key=int)
    return sorted(classes)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def label_ids(labels: list[str], names: list[str], source: str) -> list[int]:
    """The class id of each label; a label not among `names` is a DataError."""
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise DataError(
            f"{source} has labels the model does not know: {', '.join(map(repr, unknown[:5]))}; "
            f"its classes are {', '.join(map(repr, names))}"
        )
    return [index[label] for label in labels]


# -- splitting ----------------------------------------------------------------------------


def split_labelled(
    data: LabelledTexts,
    fractions: tuple[float, float, float] = REFERENCE_FRACTIONS,
    seed: int = REFERENCE_SEED,
    balance: bool = False,
) -> dict[str, LabelledTexts]:
    """Train, validation and test splits.

    balance: undersample every class to the size of the smallest, keeping for each class the
    first n of a permutation drawn with `seed` (classes in order of first appearance, the
    smallest whole). Then every example is shuffled with `seed` and cut at
    int(n * train) and int(n * train) + int(n * val), as the reference does.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1):
        raise DataError(
            f"split fractions must be three non-negative numbers summing to 1, got {fractions}"
        )
    indices = list(range(len(data)))
    if balance:
        by_class: dict[str, list[int]] = {}
        for i, label in enumerate(data.labels):
            by_class.setdefault(label, []).append(i)
        smallest = min(len(members) for members in by_class.values())
        indices = []
        for members in by_class.values():
            if len(members) > smallest:
                keep = np.random.RandomState(seed).permutation(len(members))[:smallest]
                members = [members[i] for i in keep]
            indices += members
    order = np.random.RandomState(seed).permutation(len(indices))
    indices = [indices[i] for i in order]
    train_end = int(len(indices) * fractions[0])
    val_end = train_end + int(len(indices) * fractions[1])
    parts = (indices[:train_end], indices[train_end:val_end], indices[val_end:])
    return {name: data.subset(part) for name, part in zip(SPLITS, parts, strict=True)}


def class_counts(data: LabelledTexts) -> dict[str, int]:
    return dict(sorted(Counter(data.labels).items()))


# -- batches ------------------------------------------------------------------------------


@dataclass
class EncodedExamples:
    """Token ids (each truncated to `max_length`) and class ids of a split."""

    ids: list[list[int]]
    labels: list[int]
    truncated: int  # how many texts were longer than max_length

    def __len__(self) -> int:
        return len(self.ids)


def encode_examples(
    data: LabelledTexts, tokenizer, names: list[str], max_length: int, source: str
) -> EncodedExamples:
    """Encode each text (keeping its first `max_length` tokens) and map its label to an id."""
    ids = tokenizer.encode_batch(data.texts)
    empty = next((i for i, row in enumerate(ids, 1) if not row), None)
    if empty is not None:
        raise DataError(f"{source}, example {empty}: the text encodes to no tokens")
    truncated = sum(len(row) > max_length for row in ids)
    ids = [row[:max_length] for row in ids]
    return EncodedExamples(ids, label_ids(data.labels, names, source), truncated)


def pad_batch(
    rows: list[list[int]], pad_id: int, side: str = "right", device="cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids padded to the longest row, and the mask that is True on real tokens: (B, T) each."""
    T = max(len(row) for row in rows)
    idx = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.bool)
    for i, row in enumerate(rows):
        span = slice(0, len(row)) if side == "right" else slice(T - len(row), T)
        idx[i, span] = torch.tensor(row, dtype=torch.long)
        mask[i, span] = True
    device = torch.device(device)
    if device.type == "cuda":
        return idx.pin_memory().to(device, non_blocking=True), mask.pin_memory().to(
            device, non_blocking=True
        )
    return idx.to(device), mask.to(device)


class ClassificationBatches(EpochBatches):
    """Batches of (idx, padding_mask, labels) over encoded examples: training batches epoch by
    epoch (`gptlab.data.epochs`), each epoch in its own order drawn from (seed, epoch), as the
    reference shuffles and drops the last partial batch."""

    def __init__(
        self,
        examples: EncodedExamples,
        batch_size: int,
        pad_id: int,
        side: str = "right",
        seed: int = 0,
        micro_batches_per_step: int = 1,
    ):
        super().__init__(len(examples), batch_size, seed, micro_batches_per_step)
        self.examples = examples
        self.pad_id = pad_id
        self.side = side

    def train_batch(self, step: int, index: int, device="cpu"):
        epoch, k = self.locate(step, index)
        order = np.random.default_rng((self.seed, epoch)).permutation(len(self.examples))
        return self._batch(order[k * self.batch_size : (k + 1) * self.batch_size], device)

    def eval_batches(self, device="cpu") -> Iterator[tuple[torch.Tensor, ...]]:
        """Every example once, in order, the last batch possibly smaller."""
        for start in range(0, len(self.examples), self.batch_size):
            yield self._batch(
                range(start, min(start + self.batch_size, len(self.examples))), device
            )

    def _batch(self, indices, device):
        idx, mask = pad_batch(
            [self.examples.ids[i] for i in indices], self.pad_id, self.side, device
        )
        labels = torch.tensor([self.examples.labels[i] for i in indices], dtype=torch.long)
        return idx, mask, labels.to(device)
