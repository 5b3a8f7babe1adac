"""Pictures of positional encodings: the tables themselves and how alike their positions are.

Sinusoidal encodings (Vaswani et al. 2017, 3.5) are stripes: each pair of dimensions is a sine
and a cosine, fast ones on the left, slow ones on the right. A learned table (GPT-2's `wpe`)
starts as noise and ends with whatever structure training found useful. The cosine similarity
of every pair of positions shows what the model can read off them: a bright band along the
diagonal means nearby positions look alike, so the model can tell near from far.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor, nn

from gptlab.nn.position import LearnedPositionalEmbedding, SinusoidalPositionalEncoding
from gptlab.viz.figure import new_figure, save_png


def position_table(encoding: nn.Module) -> Tensor:
    """The (T, C) table of a positional encoding module, learned or sinusoidal."""
    if isinstance(encoding, SinusoidalPositionalEncoding):
        return encoding.table.detach().float().cpu()
    if isinstance(encoding, LearnedPositionalEmbedding | nn.Embedding):
        return encoding.weight.detach().float().cpu()
    raise TypeError(f"no table to read in a {type(encoding).__name__}")


def cosine_similarity_matrix(table: Tensor) -> Tensor:
    """(T, T): entry [i, j] is the cosine of the angle between the vectors of positions i and j."""
    unit = table / table.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # (T, C)
    return unit @ unit.T


def plot_table(axes, table: Tensor, title: str) -> None:
    """A (T, C) table as a heatmap, positions down and dimensions across, 0 in white."""
    # The colour scale ends at the 99th percentile: a few outliers must not wash out the rest.
    limit = float(np.percentile(table.abs().numpy(), 99)) or 1.0
    image = axes.imshow(
        table.numpy(),
        cmap="RdBu_r",
        vmin=-limit,
        vmax=limit,
        aspect="auto",
    )
    axes.set_title(title)
    axes.set_xlabel("dimension")
    axes.set_ylabel("position")
    axes.figure.colorbar(image, ax=axes, shrink=0.8)


def plot_similarity(axes, table: Tensor, title: str) -> None:
    """The cosine similarity of every pair of positions of a table, from -1 to 1."""
    image = axes.imshow(
        cosine_similarity_matrix(table).numpy(),
        cmap="RdBu_r",
        vmin=-1,
        vmax=1,
    )
    axes.set_title(title)
    axes.set_xlabel("position")
    axes.set_ylabel("position")
    axes.figure.colorbar(image, ax=axes, shrink=0.8)


def plot_positions(
    model: nn.Module, out: str | Path, max_positions: int | None = None, title: str | None = None
) -> Path:
    """The model's positional encodings beside sinusoidal ones of the same shape (tables on top,
    cosine similarities of positions below), written to `out` (PNG)."""
    own = position_table(model.wpe)  # (T, C)
    if max_positions is not None:
        own = own[:max_positions]
    T, C = own.shape
    if isinstance(model.wpe, SinusoidalPositionalEncoding):
        columns = [("this model's sinusoidal", own)]
    elif C % 2:  # sinusoidal encodings come in sine-cosine pairs: there is no reference to show
        columns = [("this model's learned", own)]
    else:
        columns = [
            ("this model's learned", own),
            ("sinusoidal", SinusoidalPositionalEncoding(T, C).table),
        ]
    figure = new_figure(6 * len(columns), 10)
    for column, (name, table) in enumerate(columns):
        plot_table(
            figure.add_subplot(2, len(columns), column + 1), table, f"{name} encodings ({T} x {C})"
        )
        plot_similarity(
            figure.add_subplot(2, len(columns), len(columns) + column + 1),
            table,
            f"{name}: cosine similarity of positions",
        )
    if title:
        figure.suptitle(title)
    return save_png(figure, out)
