"""The Inspect tab's pictures: the logit lens and the attention maps of the prompt.

Both are the figures `gptlab inspect logit-lens` and `gptlab viz attention` write, handed to
the page as images. A model with more heads than one picture can show (GPT-2 has 144) gets one
layer's maps, the last unless the page asks for another.
"""

from __future__ import annotations

from matplotlib.figure import Figure
from torch import nn

from gptlab.interpret.hooks import check_layer_head
from gptlab.interpret.lens import logit_lens, logit_lens_figure
from gptlab.viz.attention import MAX_PANELS, attention_figure
from gptlab.viz.figure import png_bytes


def inspection(
    model: nn.Module, tokenizer, prompt: str, layer: int | None = None
) -> tuple[Figure, Figure]:
    """(logit lens, attention maps) of `prompt`; `layer` picks the maps' layer (None: every
    layer of a small model, the last of a large one)."""
    n_layer, n_head = len(model.h), model.h[0].attn.n_head
    check_layer_head(model, layer)
    if layer is None and n_layer * n_head > MAX_PANELS:
        layer = n_layer - 1
    lens = logit_lens_figure(logit_lens(model, tokenizer, prompt))
    return lens, attention_figure(model, tokenizer, prompt, layer=layer)


def figure_image(figure: Figure):
    """A figure as a PIL image, which a `gr.Image` shows."""
    import io

    from PIL import Image

    return Image.open(io.BytesIO(png_bytes(figure)))
