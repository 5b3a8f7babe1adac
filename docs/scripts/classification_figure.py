"""Make docs/figures/confusion.png: a classifier's confusion matrix, from its evaluation report.

    uv run gptlab eval runs/spam --json > report.json
    uv run python docs/scripts/classification_figure.py report.json [OUT] [--title TEXT]

The report is what `gptlab eval RUN --json` prints for a classification run (its test split by
default); the figure is the one `gptlab viz confusion` draws. Name the run in --title: the
report says what it was measured on, not which model it measured.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from figure_size import check_size

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "figures" / "confusion.png"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("report", help="a JSON report from `gptlab eval RUN --json`")
    parser.add_argument(
        "out", nargs="?", default=str(DEFAULT_OUT), help=f"PNG to write (default {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--title", help="the first line of the title (default: what the report measured)"
    )
    args = parser.parse_args()

    from gptlab.errors import GptlabError
    from gptlab.viz.classification import confusion_matrix_figure, read_report
    from gptlab.viz.figure import save_png

    try:
        path = save_png(confusion_matrix_figure(read_report(args.report), args.title), args.out)
    except GptlabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return check_size(path)


if __name__ == "__main__":
    sys.exit(main())
