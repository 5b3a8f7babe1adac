"""Make docs/figures/lora-spectrum.png: how much of a full fine-tune's update a rank-r one holds.

    export GPTLAB_DATA=../shared/data
    uv run gptlab train --preset shakespeare-char-cpu --data english-mix --max-iters 1500 \
        --out runs/char-mix
    uv run gptlab finetune lm runs/char-mix --data poetry/whitman --max-iters 300 \
        --patience 100 --out runs/char-whitman
    uv run python docs/scripts/lora_figure.py runs/char-mix runs/char-whitman \
        --title "4 x 128 char GPT (english-mix, 1500 steps), fully fine-tuned on Whitman (300 steps)"

BASE is any model `gptlab sample` reads; TUNED is a full (not LoRA) fine-tune of it. The figure
is `gptlab.viz.adapters.plot_update_spectrum` of ΔW = W_tuned - W_base; name both models in
--title, since the weights do not say what they were trained on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from figure_size import check_size

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "figures" / "lora-spectrum.png"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("base", help="the base model: a run directory, HF folder or name")
    parser.add_argument("tuned", help="a full fine-tune of BASE (a run directory)")
    parser.add_argument(
        "out", nargs="?", default=str(DEFAULT_OUT), help=f"PNG to write (default {DEFAULT_OUT})"
    )
    parser.add_argument("--title", required=True, help="what the base and the fine-tune are")
    args = parser.parse_args()

    from gptlab.errors import GptlabError
    from gptlab.pretrained import load_model
    from gptlab.viz.adapters import (
        LORA_RANKS,
        energy_share,
        plot_update_spectrum,
        projection_shapes,
        update_spectrum,
    )
    from gptlab.viz.figure import save_png

    try:
        base, _, _ = load_model(args.base)
        tuned, _, _ = load_model(args.tuned)
        spectrum = update_spectrum(base, tuned)
        figure = plot_update_spectrum(spectrum, projection_shapes(base), args.title)
        path = save_png(figure, args.out)
    except GptlabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("mean share of ΔW's energy in the top r directions:")
    print(f"{'kind':>22} " + " ".join(f"{'r=' + str(r):>6}" for r in LORA_RANKS))
    for kind, values in spectrum.items():
        shares = energy_share(values).mean(dim=0)
        print(f"{kind:>22} " + " ".join(f"{shares[r - 1]:6.1%}" for r in LORA_RANKS))
    return check_size(path)


if __name__ == "__main__":
    sys.exit(main())
