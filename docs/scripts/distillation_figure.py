"""Make docs/figures/distillation-soft-targets.png: what a teacher's soft targets carry that the
label does not. A trained character-level teacher reads a text; for a few positions, the bars are
its next-character distribution at temperature 1 and softened at T = 2, beside the label (one
character, probability 1).

    GPTLAB_DATA=../shared/data uv run gptlab train --preset shakespeare-char-cpu --out runs/shakespeare-cpu
    uv run python docs/scripts/distillation_figure.py runs/shakespeare-cpu
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from figure_size import check_size

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "figures" / "distillation-soft-targets.png"
TEXT = "ROMEO:\nWhat light through yonder window breaks"
POSITIONS = (8, 14, 24)  # predict the character after TEXT[: p + 1]
TOP = 8


def best_val_loss(run: str) -> str:
    """The best validation loss in a run's metrics.jsonl, as text ("?" when it has none)."""
    import json

    path = Path(run) / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    losses = [m["loss"] for m in map(json.loads, lines) if m.get("split") == "val"]
    return f"{min(losses):.2f}" if losses else "?"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("teacher", help="a character-level language-model run directory")
    parser.add_argument("out", nargs="?", default=str(DEFAULT_OUT), help="PNG to write")
    parser.add_argument("--temperature", type=float, default=2.0)
    args = parser.parse_args()

    import torch

    from gptlab.pretrained import load_model
    from gptlab.viz.figure import new_figure, save_png

    model, tokenizer, _ = load_model(args.teacher, task="lm")
    ids = torch.tensor([tokenizer.encode(TEXT)])
    with torch.no_grad():
        logits, _ = model(ids, all_logits=True)  # (1, T, V)
    figure = new_figure(10, 3.4)
    axes = figure.subplots(1, len(POSITIONS))
    for ax, p in zip(axes, POSITIONS, strict=True):
        label = TEXT[p + 1]
        plain = torch.softmax(logits[0, p], -1)
        soft = torch.softmax(logits[0, p] / args.temperature, -1)
        top = plain.topk(TOP).indices.tolist()
        if tokenizer.encode(label)[0] not in top:
            top[-1] = tokenizer.encode(label)[0]
        names = [tokenizer.decode([i]).replace(" ", "␣").replace("\n", "\\n") for i in top]
        x = torch.arange(len(top))
        ax.bar(x - 0.27, [1.0 if tokenizer.decode([i]) == label else 0.0 for i in top], 0.27,
               label="label (one-hot)", color="#bbbbbb")  # fmt: skip
        ax.bar(x, plain[top].tolist(), 0.27, label="teacher, T = 1", color="#3f51b5")
        ax.bar(x + 0.27, soft[top].tolist(), 0.27, label=f"teacher, T = {args.temperature:g}",
               color="#ff9800")  # fmt: skip
        ax.set_xticks(x.tolist(), names)
        context = TEXT[max(0, p - 12) : p + 1].replace("\n", "\\n")
        ax.set_title(f"after “…{context}”", fontsize=9)
        ax.set_ylim(0, 1.05)
    axes[0].set_ylabel("probability of the next character")
    axes[0].legend(fontsize=8, loc="upper right")
    figure.suptitle(
        f"Soft targets of a character-level teacher ({model.num_params() / 1e6:.2f}M parameters, "
        f"best validation loss {best_val_loss(args.teacher)})",
        fontsize=10,
    )
    return check_size(save_png(figure, args.out))


if __name__ == "__main__":
    sys.exit(main())
