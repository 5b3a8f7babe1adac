"""Make docs/figures/quantization-error.png: how far int8 and int4 move a trained GPT's weights.

    export GPTLAB_DATA=../shared/data
    uv run gptlab train --preset shakespeare-char-cpu --max-iters 600 --no-tensorboard \
        --out runs/char-600
    uv run python docs/scripts/quantization_figure.py runs/char-600 \
        --title "4 x 128 char GPT (TinyShakespeare, 600 steps); at width 128 a group of 128 is a whole row, but in mlp c_proj"

MODEL is any model `gptlab sample` reads (a float one: the figure quantizes it here, through
`gptlab.quantization`'s functions). The figure is `gptlab.viz.quantization`'s
`plot_quantization_error`; name the model in --title, since the weights do not say what they
were trained on. A group size that does not divide a layer's input width cannot be drawn.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from figure_size import check_size

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "figures" / "quantization-error.png"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="a float model: a run directory, HF folder or name")
    parser.add_argument(
        "out", nargs="?", default=str(DEFAULT_OUT), help=f"PNG to write (default {DEFAULT_OUT})"
    )
    parser.add_argument("--title", required=True, help="what the model is")
    args = parser.parse_args()

    import torch

    from gptlab.errors import ConfigError, GptlabError
    from gptlab.pretrained import load_model
    from gptlab.quantization import is_quantized
    from gptlab.viz.adapters import projection_shapes
    from gptlab.viz.figure import save_png
    from gptlab.viz.quantization import (
        SCHEMES,
        plot_quantization_error,
        relative_errors,
        relative_mse,
    )

    try:
        model, _, _ = load_model(args.model)
        if is_quantized(model):
            raise ConfigError(f"{args.model} is quantized already: give its float source")
        shapes = projection_shapes(model)
        errors = relative_errors(model)
        path = save_png(plot_quantization_error(errors, args.title), args.out)
    except GptlabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("‖W - Ŵ‖² / ‖W‖² (relative MSE) per kind of projection (out x in):")
    print(f"{'kind':>28} " + " ".join(f"{scheme:>20}" for scheme in SCHEMES))
    for kind, by_scheme in errors.items():
        label = f"{kind} {shapes[kind][0]}x{shapes[kind][1]}"
        row = " ".join(f"{relative_mse(by_scheme[scheme]):20.2e}" for scheme in SCHEMES)
        print(f"{label:>28} {row}")
    print("median |w - ŵ| / rms(W) over all projections:")
    for scheme in SCHEMES:
        pooled = torch.cat([by_scheme[scheme] for by_scheme in errors.values()])
        print(f"{scheme:>28} {pooled.median().item():.2%}")
    return check_size(path)


if __name__ == "__main__":
    sys.exit(main())
