"""gptlab.data.labelled: reading labelled files and the SMS Spam Collection, the reference split,
padded batches drawn by (step, index), and classification metrics against scikit-learn."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_file

from gptlab.data.labelled import (
    ClassificationBatches,
    EncodedExamples,
    class_counts,
    label_ids,
    label_names,
    load_labelled,
    pad_batch,
    read_rows,
    split_labelled,
    write_rows,
)
from gptlab.errors import DataError
from gptlab.evaluation import classification_metrics

# -- the SMS Spam Collection ----------------------------------------------------------------


@pytest.fixture(scope="module")
def sms_spam_file() -> Path:
    return shared_file("sms-spam", "SMSSpamCollection")


def test_sms_spam_has_5572_messages_747_of_them_spam(sms_spam_file):
    data = load_labelled("sms-spam")
    assert len(data) == 5572
    assert class_counts(data) == {"ham": 4825, "spam": 747}


def test_the_balanced_split_is_the_references_example_for_example(sms_spam_file):
    """Raschka 2024, chapter 6: ham undersampled to the spam count, shuffled, cut 70/10/20."""
    pd = pytest.importorskip("pandas")
    df = pd.read_csv(sms_spam_file, sep="\t", header=None, names=["Label", "Text"])
    spam = df[df["Label"] == "spam"]
    ham = df[df["Label"] == "ham"].sample(len(spam), random_state=123)
    balanced = pd.concat([ham, spam]).sample(frac=1, random_state=123).reset_index(drop=True)
    train_end = int(len(balanced) * 0.7)
    val_end = train_end + int(len(balanced) * 0.1)
    reference = {
        "train": balanced[:train_end],
        "val": balanced[train_end:val_end],
        "test": balanced[val_end:],
    }

    splits = split_labelled(load_labelled("sms-spam"), balance=True)

    assert [len(splits[name]) for name in ("train", "val", "test")] == [1045, 149, 300]
    for name, part in reference.items():
        assert splits[name].texts == part["Text"].tolist(), name
        assert splits[name].labels == part["Label"].tolist(), name


# -- labelled files -------------------------------------------------------------------------

# Texts that test the readers: a comma, a tab-free quote, a line break inside a field, non-ASCII.
EXAMPLES = [
    ("Free entry, text WIN to 80086", "spam"),
    ('She said "see you at 6"', "ham"),
    ("Two lines:\nthe second one", "ham"),
    ("Gewinn: £1000 für dich", "spam"),
]


def write_labelled(path: Path, rows: list[dict]) -> Path:
    """Rows written with the standard library's writers: the files a user's tools make."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    else:
        with open(path, "w", encoding="utf-8", newline="") as file:
            writer = csv.DictWriter(
                file, fieldnames=list(rows[0]), delimiter="\t" if path.suffix == ".tsv" else ","
            )
            writer.writeheader()
            writer.writerows(rows)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_csv_tsv_and_jsonl_files_with_named_columns_read_the_same_examples(tmp_path, suffix):
    rows = [{"id": i, "message": text, "kind": label} for i, (text, label) in enumerate(EXAMPLES)]
    path = write_labelled(tmp_path / f"messages{suffix}", rows)
    data = load_labelled(path, text_column="message", label_column="kind")
    assert data.texts == [text for text, _ in EXAMPLES]
    assert data.labels == [label for _, label in EXAMPLES]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_file_saved_with_a_byte_order_mark_reads_its_first_column(tmp_path, suffix):
    """Spreadsheet programs save "CSV UTF-8" with a byte-order mark before the first header."""
    rows = [{"text": text, "label": label} for text, label in EXAMPLES]
    path = write_labelled(tmp_path / f"sheet{suffix}", rows)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_labelled(path).texts == [text for text, _ in EXAMPLES]


def test_integer_labels_are_ordered_by_value_and_names_alphabetically():
    assert label_names(["10", "2", "1", "2"]) == ["1", "2", "10"]
    assert label_names(["spam", "ham", "eggs"]) == ["eggs", "ham", "spam"]


def test_label_ids_are_positions_in_the_class_names(tmp_path):
    rows = [{"text": f"review {i}", "label": stars} for i, stars in enumerate([10, 2, 1, 2])]
    data = load_labelled(write_labelled(tmp_path / "reviews.jsonl", rows))
    names = label_names(data.labels)
    assert label_ids(data.labels, names, "reviews") == [2, 1, 0, 1]


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("no_label.csv", "text,stars\nhello,1\nbye,2\n", "no column 'label'"),
        ("empty_text.csv", "text,label\nhello,a\n  ,b\n", "row 2: the text is empty"),
        ("one_class.csv", "text,label\nhello,a\nbye,a\n", "only one class ('a')"),
        ("broken.jsonl", '{"text": "hi", "label": "a"}\n{"text": "bye",\n', "line 2: not JSON"),
        ("table.xlsx", "text,label\nhello,a\nbye,b\n", "unknown format '.xlsx'"),
        ("no_label_value.csv", "text,label\nhello,a\nbye,\n", "row 2: the label is missing"),
    ],
)
def test_a_bad_labelled_file_is_a_data_error_that_names_the_problem(
    tmp_path, name, content, message
):
    with pytest.raises(DataError, match=re.escape(message)):
        load_labelled(write_text(tmp_path / name, content))


def test_a_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="neither a labelled file"):
        load_labelled(tmp_path / "missing.csv")


def test_a_label_the_model_does_not_know_is_a_data_error():
    with pytest.raises(DataError, match="'maybe'.*its classes are 'ham', 'spam'"):
        label_ids(["ham", "maybe"], ["ham", "spam"], "new.csv")


def test_a_one_class_file_reads_where_one_class_is_enough(tmp_path):
    """Evaluation may use a file of one class (only spam, say); training may not."""
    path = write_text(tmp_path / "spam.csv", "text,label\nwin,spam\nfree,spam\n")
    assert load_labelled(path, min_classes=1).labels == ["spam", "spam"]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_written_rows_read_back_with_every_column(tmp_path, suffix):
    """Rows read from JSONL may have different keys; a CSV or TSV of them has every column."""
    rows = [{"text": "hi", "predicted": "ham"}, {"text": "win", "id": "7", "predicted": "spam"}]
    write_rows(tmp_path / f"out{suffix}", rows)
    expected = rows if suffix == ".jsonl" else [{**row, "id": row.get("id", "")} for row in rows]
    assert read_rows(tmp_path / f"out{suffix}") == expected


# -- splitting ------------------------------------------------------------------------------


def test_unbalanced_splits_partition_every_example_in_a_seeded_order(tmp_path):
    rows = [{"text": f"t{i}", "label": "a" if i % 3 else "b"} for i in range(50)]
    data = load_labelled(write_labelled(tmp_path / "d.csv", rows))
    splits = split_labelled(data, (0.6, 0.2, 0.2), seed=7)
    texts = [t for name in ("train", "val", "test") for t in splits[name].texts]
    assert [len(splits[n]) for n in ("train", "val", "test")] == [30, 10, 10]
    assert sorted(texts) == sorted(data.texts) and texts != data.texts
    assert split_labelled(data, (0.6, 0.2, 0.2), seed=7) == splits


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.8, 0.3, -0.1), (0.5, 0.3, 0.1)])
def test_fractions_must_be_three_non_negative_numbers_summing_to_one(tmp_path, fractions):
    data = load_labelled(write_text(tmp_path / "x.csv", "text,label\nhi,a\nbye,b\n"))
    with pytest.raises(DataError, match="fractions"):
        split_labelled(data, fractions)


# -- batches --------------------------------------------------------------------------------

PAD = 99


def test_pad_batch_pads_on_the_right_and_masks_the_padding():
    idx, mask = pad_batch([[1, 2, 3], [4]], PAD, "right")
    assert idx.tolist() == [[1, 2, 3], [4, PAD, PAD]]
    assert mask.tolist() == [[True, True, True], [True, False, False]]


def test_pad_batch_pads_on_the_left_and_masks_the_padding():
    idx, mask = pad_batch([[1, 2, 3], [4]], PAD, "left")
    assert idx.tolist() == [[1, 2, 3], [PAD, PAD, 4]]
    assert mask.tolist() == [[True, True, True], [False, False, True]]


def numbered_examples(n: int) -> EncodedExamples:
    """Example i is token i repeated 1 + i % 3 times, so a padded row says which example it is."""
    return EncodedExamples([[i] * (1 + i % 3) for i in range(n)], [i % 2 for i in range(n)], 0)


def examples_in(batch) -> list[int]:
    idx, mask, labels = batch
    assert labels.tolist() == [i % 2 for i in idx[:, 0].tolist()]
    return idx[:, 0].tolist()  # right padding: the first token is real


def test_a_training_batch_is_a_function_of_step_and_index_only():
    batches = ClassificationBatches(numbered_examples(12), 3, PAD, seed=5)
    later = examples_in(batches.train_batch(7, 0))
    for step in range(7):
        batches.train_batch(step, 0)
    again = ClassificationBatches(numbered_examples(12), 3, PAD, seed=5)
    assert examples_in(batches.train_batch(7, 0)) == later == examples_in(again.train_batch(7, 0))
    other_seed = ClassificationBatches(numbered_examples(12), 3, PAD, seed=6)
    assert [examples_in(other_seed.train_batch(s, 0)) for s in range(4)] != [
        examples_in(batches.train_batch(s, 0)) for s in range(4)
    ]


def test_each_epoch_holds_every_example_once_in_its_own_order():
    batches = ClassificationBatches(numbered_examples(12), 3, PAD, seed=0)
    assert batches.batches_per_epoch == 4
    epochs = [
        [i for step in range(4 * e, 4 * e + 4) for i in examples_in(batches.train_batch(step, 0))]
        for e in range(3)
    ]
    assert all(sorted(epoch) == list(range(12)) for epoch in epochs)
    assert epochs[0] != epochs[1] != epochs[2]


def test_an_epochs_last_partial_batch_is_dropped():
    batches = ClassificationBatches(numbered_examples(10), 3, PAD, seed=0)
    assert batches.batches_per_epoch == 3
    epoch = [examples_in(batches.train_batch(step, 0)) for step in range(3)]
    assert [len(batch) for batch in epoch] == [3, 3, 3]
    assert len({i for batch in epoch for i in batch}) == 9


def test_micro_batches_of_a_step_are_consecutive_batches():
    one = ClassificationBatches(numbered_examples(12), 3, PAD, seed=1)
    four = ClassificationBatches(numbered_examples(12), 3, PAD, seed=1, micro_batches_per_step=4)
    for step in range(3):
        for index in range(4):
            assert examples_in(four.train_batch(step, index)) == examples_in(
                one.train_batch(4 * step + index, 0)
            )


@pytest.mark.parametrize(
    "micro_batches, epochs, steps",
    [(1, 1, 4), (1, 2.5, 10), (1, 0.1, 1), (2, 1, 2), (2, 1.25, 3), (3, 5, 7)],
)
def test_steps_for_epochs_rounds_up_to_whole_steps(micro_batches, epochs, steps):
    batches = ClassificationBatches(
        numbered_examples(12), 3, PAD, micro_batches_per_step=micro_batches
    )
    assert batches.steps_for(epochs) == steps


def test_eval_batches_give_every_example_once_in_order():
    batches = ClassificationBatches(numbered_examples(10), 4, PAD)
    sizes, seen = [], []
    for batch in batches.eval_batches():
        sizes.append(len(batch[2]))
        seen += examples_in(batch)
    assert sizes == [4, 4, 2] and seen == list(range(10))


# -- metrics --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "predicted_classes",
    [range(3), range(2)],  # every class predicted; one never predicted (precision 0 / 0)
)
def test_classification_metrics_equal_scikit_learns(predicted_classes):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    names = ["neg", "neutral", "pos"]
    actual = rng.integers(0, 3, 200).tolist()
    predicted = rng.choice(list(predicted_classes), 200).tolist()
    K = list(range(3))

    report = classification_metrics(predicted, actual, names)

    assert report["accuracy"] == pytest.approx(metrics.accuracy_score(actual, predicted))
    assert report["macro_f1"] == pytest.approx(
        metrics.f1_score(actual, predicted, labels=K, average="macro", zero_division=0)
    )
    per_class = {
        "precision": metrics.precision_score(
            actual, predicted, labels=K, average=None, zero_division=0
        ),
        "recall": metrics.recall_score(actual, predicted, labels=K, average=None, zero_division=0),
        "f1": metrics.f1_score(actual, predicted, labels=K, average=None, zero_division=0),
    }
    for k, name in enumerate(names):
        for key, values in per_class.items():
            assert report["per_class"][name][key] == pytest.approx(values[k]), (name, key)
        assert report["per_class"][name]["support"] == actual.count(k)
    assert report["confusion"] == metrics.confusion_matrix(actual, predicted, labels=K).tolist()
    assert report["examples"] == 200 and report["labels"] == names
