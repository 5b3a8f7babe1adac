"""Make the figures of docs/interpret.md's tour, with the code `gptlab inspect` runs.

    GPTLAB_DATA=../shared/data uv run gptlab train --preset shakespeare-char-cpu --out runs/shakespeare-cpu
    uv run python docs/scripts/interpret_figures.py runs/shakespeare-cpu

Each figure is one `gptlab inspect` command (printed as it runs, with its numbers saved beside
the figure as JSON under --numbers); the PNGs go to docs/figures/. The induction figures of the
same page come from benchmarks/induction.py, which writes them to docs/figures/ too.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path

FIGURES = Path(__file__).resolve().parents[1] / "figures"
MAX_BYTES = 300 * 1024

# A made-up name, said twice: the second time, only the context says how it ends.
CLEAN = "ZOLEM: I go.\nCLOWN: Go, ZOLE"
CORRUPT = "ZOLAN: I go.\nCLOWN: Go, ZOLE"  # the same length: positions pair up


def commands(run_dir: str, out: str) -> list[list[str]]:
    """The `gptlab inspect` arguments of each figure, written to the folder `out`."""
    return [
        ["logit-lens", run_dir, "--prompt", CLEAN, "--out", f"{out}/logit-lens.png"],
        ["heads", run_dir, "--prompt", CLEAN, "--out", f"{out}/heads.png"],
        [
            "attribute",
            run_dir,
            "--prompt",
            CLEAN,
            "--token",
            "M",
            "--versus",
            "N",
            "--out",
            f"{out}/attribution.png",
        ],
        [
            "patch",
            run_dir,
            "--prompt",
            CLEAN,
            "--corrupt",
            CORRUPT,
            "--answer",
            "M",
            "--wrong",
            "N",
            "--out",
            f"{out}/patching.png",
        ],
        [
            "ablate",
            run_dir,
            "--data",
            "tinyshakespeare",
            "--method",
            "mean",
            "--batches",
            "8",
            "--batch-size",
            "16",
            "--out",
            f"{out}/ablation.png",
        ],
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a run directory trained on TinyShakespeare")
    parser.add_argument("--numbers", help="a folder for each figure's numbers (JSON)")
    parser.add_argument("--out-dir", default=str(FIGURES), help="default docs/figures")
    args = parser.parse_args()

    from gptlab import cli

    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    for arguments in commands(args.run_dir, args.out_dir):
        shown = " ".join(repr(a) if " " in a or "\n" in a else a for a in arguments)
        print("gptlab inspect", shown, flush=True)
        captured = io.StringIO()
        with contextlib.redirect_stdout(captured):
            code = cli.main(["inspect", *arguments, "--json"])
        if code:
            return code
        if args.numbers:
            numbers = Path(args.numbers) / (Path(arguments[-1]).stem + ".json")
            numbers.parent.mkdir(parents=True, exist_ok=True)
            numbers.write_text(captured.getvalue())
        size = Path(arguments[-1]).stat().st_size
        if size > MAX_BYTES:
            print(
                f"{arguments[-1]} is {size // 1024} KB, over {MAX_BYTES // 1024} KB",
                file=sys.stderr,
            )
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
