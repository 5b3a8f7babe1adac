"""Make the figures of the docs from a trained run directory, with the code `gptlab viz` runs.

    GPTLAB_DATA=../shared/data uv run gptlab train --preset shakespeare-char-cpu --out runs/shakespeare-cpu
    uv run python docs/scripts/make_figures.py runs/shakespeare-cpu

Each figure is one `gptlab viz` command (printed as it runs); the PNGs go to docs/figures/ and
must stay under 300 KB each, as the repository keeps them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

FIGURES = Path(__file__).resolve().parents[1] / "figures"
MAX_BYTES = 300 * 1024
PROMPT = "ROMEO: But soft, what light"


def commands(run_dir: str) -> list[list[str]]:
    """The `gptlab viz` arguments of each figure of the docs."""
    out = str(FIGURES)
    return [
        ["embeddings", run_dir, "--method", "pca", "--out", f"{out}/embeddings-pca.png"],
        ["embeddings", run_dir, "--method", "tsne", "--out", f"{out}/embeddings-tsne.png"],
        ["positions", run_dir, "--out", f"{out}/positions.png"],
        ["attention", run_dir, "--prompt", PROMPT, "--out", f"{out}/attention.png"],
        [
            "attention",
            run_dir,
            "--prompt",
            PROMPT,
            "--layer",
            "1",
            "--head",
            "3",
            "--out",
            f"{out}/attention-head.png",
        ],
        ["curves", run_dir, "--out", f"{out}/curves.png"],
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a run directory trained on TinyShakespeare")
    args = parser.parse_args()

    from gptlab.commands import viz

    gptlab = argparse.ArgumentParser(prog="gptlab")
    viz.add_parser(gptlab.add_subparsers())
    FIGURES.mkdir(parents=True, exist_ok=True)
    for arguments in commands(args.run_dir):
        print("gptlab viz", " ".join(f'"{a}"' if " " in a else a for a in arguments), flush=True)
        viz.run(gptlab.parse_args(["viz", *arguments]))
        size = Path(arguments[-1]).stat().st_size
        if size > MAX_BYTES:
            print(
                f"{arguments[-1]} is {size / 1024:.0f} KB, over the {MAX_BYTES // 1024} KB limit",
                file=sys.stderr,
            )
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
