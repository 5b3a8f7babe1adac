"""What every lesson shares: quick or full mode, and where its figures go.

- Quick mode (`--quick` on the command line, or `GPTLAB_LESSON_QUICK=1`) shrinks data and
  training so the lesson runs in seconds: the test suite runs every lesson this way.
- Figures are saved as PNG files in `GPTLAB_LESSON_OUT` (default `lessons/out/`). Outside a
  notebook matplotlib draws with its Agg backend, so no window opens and nothing blocks; in
  Jupyter or VS Code the figures also show below their cell.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import matplotlib

IN_NOTEBOOK = "ipykernel" in sys.modules
if not IN_NOTEBOOK:
    matplotlib.use("Agg")

QUICK = os.environ.get("GPTLAB_LESSON_QUICK") == "1" or "--quick" in sys.argv[1:]


def quick_or_full(quick, full):
    """`quick` in quick mode, `full` otherwise: the sizes a lesson shrinks for the test suite."""
    return quick if QUICK else full


def output_dir() -> Path:
    """The folder for this lesson's figures and runs, created if needed."""
    folder = Path(os.environ.get("GPTLAB_LESSON_OUT") or Path(__file__).parent / "out")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_figure(figure, name: str) -> Path:
    """Save a matplotlib figure as `<output_dir>/<name>` and say where it went."""
    import matplotlib.pyplot as plt

    path = output_dir() / name
    figure.savefig(path, dpi=100)
    print(f"figure saved to {path}")
    if not IN_NOTEBOOK:
        plt.close(figure)  # in a notebook the figure is shown below the cell instead
    return path
