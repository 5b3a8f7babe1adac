"""Make docs/figures/attention-masks.png: GPT's causal mask beside an encoder's bidirectional
mask, for a batch row of 5 tokens and 2 padding positions, built by the functions the models
use (`gptlab.nn.attention`).

    uv run python docs/scripts/masks_figure.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from figure_size import check_size

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "figures" / "attention-masks.png"
TOKENS = ["The", "[MASK]", "of", "Den", "mark", "pad", "pad"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", nargs="?", default=str(DEFAULT_OUT), help="PNG to write")
    args = parser.parse_args()

    import torch

    from gptlab.nn.attention import attention_mask, causal_mask
    from gptlab.viz.figure import new_figure, save_png

    T = len(TOKENS)
    padding = torch.tensor([[name != "pad" for name in TOKENS]])  # (1, T)
    masks = {
        "GPT: causal (a query sees itself and the past)": causal_mask(T),
        "encoder: bidirectional, padding hidden": attention_mask(None, padding)[0, 0].expand(T, T),
    }
    figure = new_figure(8.4, 4.0)
    for ax, (title, mask) in zip(figure.subplots(1, 2), masks.items(), strict=True):
        ax.imshow(mask.float().numpy(), cmap="Blues", vmin=0, vmax=1.4)
        ax.set_xticks(range(T), TOKENS, rotation=45, fontsize=8)
        ax.set_yticks(range(T), TOKENS, fontsize=8)
        ax.set_xlabel("key (attended to)")
        ax.set_ylabel("query (attending)")
        ax.set_title(title, fontsize=9)
    figure.suptitle("Where attention is allowed (blue): mask[query, key]", fontsize=10)
    return check_size(save_png(figure, args.out))


if __name__ == "__main__":
    sys.exit(main())
