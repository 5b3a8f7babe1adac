"""Make docs/figures/seq2seq-alignment.png: the cross-attention of a trained toy run.

    uv run gptlab seq2seq train --task reverse --out runs/reverse
    uv run python docs/scripts/seq2seq_figure.py runs/reverse "8271645309"

RUN is a run of `gptlab seq2seq train` (or any encoder-decoder run); TEXT is the source to
translate. The figure is `gptlab.viz.cross_attention`'s `plot_cross_attention` of the last
decoder layer, one panel a head: the same picture as `gptlab viz attention RUN --prompt TEXT
--layer N`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from figure_size import check_size

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "figures" / "seq2seq-alignment.png"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", help="an encoder-decoder run directory")
    parser.add_argument("text", help="the source whose translation to draw")
    parser.add_argument(
        "out", nargs="?", default=str(DEFAULT_OUT), help=f"PNG to write (default {DEFAULT_OUT})"
    )
    args = parser.parse_args()

    from gptlab.errors import GptlabError
    from gptlab.tasks.seq2seq import load_seq2seq_run
    from gptlab.viz.cross_attention import plot_cross_attention

    try:
        model, src_tokenizer, tgt_tokenizer, config = load_seq2seq_run(args.run)
        last = model.config.n_decoder_layer - 1
        path = plot_cross_attention(
            model, src_tokenizer, tgt_tokenizer, args.text, args.out, layer=last
        )
    except GptlabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return check_size(path)


if __name__ == "__main__":
    sys.exit(main())
