"""The confusion matrix of a classifier, as a picture: where its mistakes go.

The input is a report of `gptlab.evaluation.classification_metrics` (what `gptlab eval RUN
--json` prints): `confusion[i][j]` counts the examples of true class i predicted as j. Each row
is coloured by its share of the true class, so a small class's mistakes show as plainly as a
large one's; each cell also gives the count, since a percentage of 3 examples means little.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from gptlab.errors import DataError
from gptlab.viz.figure import new_figure

REPORT_KEYS = ("confusion", "labels", "accuracy", "macro_f1")


def read_report(path: str | Path) -> dict:
    """A classification report written as JSON by `gptlab eval RUN --json > report.json`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no report at {path}: write one with `gptlab eval RUN --json > {path}`")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path} is not JSON: {error}") from None
    missing = [key for key in REPORT_KEYS if not isinstance(report, dict) or key not in report]
    if missing:
        raise DataError(
            f"{path} is not a classifier's report (no {', '.join(missing)}): "
            "write one with `gptlab eval RUN --json` on a classification run"
        )
    return report


def row_shares(confusion: list[list[int]]) -> np.ndarray:
    """(K, K): each count over its row's total, the share of the true class; 0 for an empty row."""
    counts = np.asarray(confusion, dtype=np.float64)  # (K, K)
    totals = counts.sum(axis=1, keepdims=True)  # (K, 1)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def confusion_matrix_figure(report: dict, title: str | None = None) -> Figure:
    """The confusion matrix of `report`: true class down, predicted class across, each cell its
    count and its share of the row.

    title: the first line of the title (default: the report's "data", what it was measured on);
    the second line gives the number of examples, the accuracy and the macro-F1.
    """
    names = report["labels"]
    counts = np.asarray(report["confusion"], dtype=np.int64)  # (K, K)
    shares = row_shares(report["confusion"])  # (K, K)
    K = len(names)
    side = min(12.0, max(4.5, 0.9 * K + 2.5))  # inches: 4.5 for two classes, up to 12
    figure = new_figure(side + 1.2, side)  # the extra width holds the colour bar
    axes = figure.add_subplot()
    image = axes.imshow(shares * 100, cmap="Blues", vmin=0, vmax=100)
    font = 13 if K <= 4 else 10 if K <= 8 else 7
    for i in range(K):
        for j in range(K):
            # dark text on light cells, white on dark ones
            colour = "white" if shares[i, j] > 0.5 else "black"
            share = f"{shares[i, j]:.1%}" if counts[i].sum() else "-"
            text = f"{counts[i, j]:,}\n{share}"
            axes.text(j, i, text, ha="center", va="center", color=colour, fontsize=font)
    rotation = 45 if max(len(name) for name in names) > 6 else 0
    axes.set_xticks(range(K), names, rotation=rotation, ha="right" if rotation else "center")
    axes.set_yticks(range(K), names)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    figure.colorbar(image, ax=axes, shrink=0.8, label="share of the true class (%)")
    heading = title or report.get("data") or "confusion matrix"
    axes.set_title(
        f"{heading}\n{counts.sum():,} examples: accuracy {report['accuracy']:.2%}, "
        f"macro-F1 {report['macro_f1']:.3f}",
        fontsize=11,
    )
    return figure
