"""Attention maps of a prompt: for each layer and head, how much each token looks at each other.

The model's attention runs on `F.scaled_dot_product_attention`, which never materialises the
weights. Rather than teach the model to return them, they are recomputed from outside by the
hooks of `gptlab.interpret` (the `blocks.{i}.attn.pattern` activations): the block's own queries
and keys through the reference `attention_pattern`. The model file stays free of visualisation
code, and the hooks work on any model with GPT-2's layout, pretrained ones included.
"""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from gptlab.errors import ConfigError
from gptlab.viz.figure import display_token, new_figure, save_png

MAX_PANELS = 48  # beyond this many heads in one picture, each is too small to read: pick a layer
MAX_LABELLED_TOKENS = 40  # beyond this many tokens, tick labels overlap


@torch.no_grad()
def attention_weights(model: nn.Module, ids: Tensor) -> Tensor:
    """The attention weights (n_layer, nh, T, T) of every head for one sequence of ids (T,)."""
    from gptlab.interpret.hooks import run_with_cache

    _, cache = run_with_cache(model, ids[None, :], "blocks.*.attn.pattern")
    maps = [cache[f"blocks.{layer}.attn.pattern"][0] for layer in range(len(model.h))]
    return torch.stack(maps).float().cpu()  # (n_layer, nh, T, T)


def select_heads(
    n_layer: int, n_head: int, layer: int | None, head: int | None
) -> list[tuple[int, int]]:
    """The (layer, head) pairs to draw: one head, one layer's heads, or every head of a small model."""
    if layer is not None and not 0 <= layer < n_layer:
        raise ConfigError(f"--layer must be in 0..{n_layer - 1}, got {layer}")
    if head is not None and not 0 <= head < n_head:
        raise ConfigError(f"--head must be in 0..{n_head - 1}, got {head}")
    layers = range(n_layer) if layer is None else [layer]
    heads = range(n_head) if head is None else [head]
    pairs = [(lay, h) for lay in layers for h in heads]
    if len(pairs) > MAX_PANELS:
        raise ConfigError(
            f"that is {len(pairs)} attention maps, too many to read in one picture: "
            f"choose a --layer (0..{n_layer - 1}) and optionally a --head (0..{n_head - 1})"
        )
    return pairs


def plot_attention(
    model: nn.Module,
    tokenizer,
    prompt: str,
    out: str | Path,
    layer: int | None = None,
    head: int | None = None,
    title: str | None = None,
) -> Path:
    """Heatmaps of attention weights for `prompt`, queries down and keys across, written to `out`.

    A grid of layers (rows) by heads (columns); `layer` and `head` narrow it down.
    """
    return save_png(attention_figure(model, tokenizer, prompt, layer, head, title), out)


def attention_figure(
    model: nn.Module,
    tokenizer,
    prompt: str,
    layer: int | None = None,
    head: int | None = None,
    title: str | None = None,
) -> Figure:
    """The figure `plot_attention` writes (the demo shows it in the page)."""
    if not prompt:
        raise ConfigError("--prompt is empty: give the text whose attention to draw")
    device = next(model.parameters()).device
    ids = torch.tensor(tokenizer.encode(prompt), dtype=torch.long, device=device)  # (T,)
    weights = attention_weights(model, ids)  # (n_layer, nh, T, T)
    n_layer, n_head = weights.shape[:2]
    pairs = select_heads(n_layer, n_head, layer, head)
    tokens = [display_token(tokenizer.decode([i])) for i in ids.tolist()]

    figure = weight_grid(
        weights,
        pairs,
        row_labels=tokens,
        column_labels=tokens,
        axis_names=("query: the token attending", "key: the token attended to"),
        colour_label="attention weight",
    )
    shown = prompt if len(prompt) <= 60 else prompt[:57] + "..."
    figure.suptitle(title or f"attention weights of {shown!r}")
    return figure


def weight_grid(
    weights: Tensor,
    pairs: list[tuple[int, int]],
    row_labels: list[str],
    column_labels: list[str],
    axis_names: tuple[str, str],
    colour_label: str,
) -> Figure:
    """A panel of attention weights per (layer, head) in `pairs`: layers down, heads across.

    weights: (n_layer, nh, rows, columns) in [0, 1]; the labels name each panel's rows (the
    tokens attending) and columns (the tokens attended to), shown on the outer panels only.
    """
    layers = sorted({lay for lay, _ in pairs})
    heads = sorted({h for _, h in pairs})
    # A single map gets a large canvas; a grid gets about 3 inches a panel, at least 6 in all.
    panel = 8.0 if len(pairs) == 1 else max(2.2, min(3.5, 14.0 / len(heads)))
    figure = new_figure(max(6.0, panel * len(heads) + 1.0), max(5.0, panel * len(layers) + 0.8))
    grid = figure.subplots(len(layers), len(heads), squeeze=False)
    labelled = max(len(row_labels), len(column_labels)) <= MAX_LABELLED_TOKENS
    font = 11 if len(pairs) == 1 else 9
    rotation = 90 if max(len(label) for label in column_labels) > 2 else 0
    for r, lay in enumerate(layers):
        for c, h in enumerate(heads):
            axes = grid[r][c]
            image = axes.imshow(weights[lay, h].numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
            axes.set_title(f"layer {lay}, head {h}", fontsize=font + 1)
            axes.set_xticks(range(len(column_labels)) if labelled else [])
            axes.set_yticks(range(len(row_labels)) if labelled else [])
            # labels on the outer edges only: the panels share both axes
            bottom, left = r == len(layers) - 1, c == 0
            axes.set_xticklabels(
                column_labels if labelled and bottom else [], rotation=rotation, fontsize=font
            )
            axes.set_yticklabels(row_labels if labelled and left else [], fontsize=font)
    figure.supylabel(axis_names[0])
    figure.supxlabel(axis_names[1])
    figure.colorbar(image, ax=grid, shrink=0.6, label=colour_label)
    return figure
