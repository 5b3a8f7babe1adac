"""How far does quantization move a trained GPT's weights? One scale a tensor, a row, a group.

Every scheme rounds each weight to the nearest of a few levels, a step `scale` apart, so each
weight moves by at most scale / 2; what differs is how many weights share a scale. The step is
set by the largest weight it must reach, so a scale shared by more weights is coarser for most
of them:

- int8 per tensor: one scale for the whole matrix, set by its largest weight;
- int8 per channel: one per output row (`gptlab.quantization.int8`, what gptlab stores);
- int4 in groups: one scale and zero point per `group_size` input features of a row
  (`gptlab.quantization.int4`), 16 levels instead of 255.

This module measures it on the projections of a model's blocks:

- `SCHEMES`: {name: round trip w -> dequantize(quantize(w))}, through the package's own functions;
- `relative_errors`: |w - ŵ| / rms(W) of every weight, pooled over the blocks, per kind and scheme;
- `relative_mse`: ‖W - Ŵ‖² / ‖W‖², the noise the scheme adds against the weights' own size;
- `plot_quantization_error`: their distribution (a CDF) and the relative MSE per kind.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from gptlab.quantization.int4 import dequantize_groupwise, quantize_groupwise
from gptlab.quantization.int8 import dequantize, quantize_per_channel
from gptlab.viz.adapters import projection_weights
from gptlab.viz.figure import new_figure


def int8_per_tensor(weight: Tensor) -> Tensor:
    """Symmetric int8 with one scale for the whole tensor, dequantized (for comparison only:
    gptlab stores per channel). It is the per-channel rule applied to the tensor as one row."""
    q, scale = quantize_per_channel(weight.reshape(1, -1))  # (1, out · in), (1,)
    return dequantize(q, scale).reshape(weight.shape)


def int8_per_channel(weight: Tensor) -> Tensor:
    """Symmetric int8 with one scale per output row, as `Int8Linear` stores it, dequantized."""
    return dequantize(*quantize_per_channel(weight))


def int4_groupwise(weight: Tensor, group_size: int) -> Tensor:
    """Asymmetric int4 with a scale and zero point per group, as `Int4Linear` stores it."""
    return dequantize_groupwise(*quantize_groupwise(weight, group_size))


SCHEMES: dict[str, Callable[[Tensor], Tensor]] = {
    "int8, per tensor": int8_per_tensor,
    "int8, per channel": int8_per_channel,
    "int4, groups of 128": partial(int4_groupwise, group_size=128),
    "int4, groups of 32": partial(int4_groupwise, group_size=32),
}
COLORS = {
    "int8, per tensor": "tab:orange",
    "int8, per channel": "tab:blue",
    "int4, groups of 128": "tab:red",
    "int4, groups of 32": "tab:purple",
}


def relative_errors(model: nn.Module) -> dict[str, dict[str, Tensor]]:
    """{kind: {scheme: |w - ŵ| / rms(W)}}: every weight of every block's projection of that
    kind, each divided by the root mean square of its own matrix, flattened and pooled."""
    errors: dict[str, dict[str, Tensor]] = {}
    for kind, weights in projection_weights(model).items():
        errors[kind] = {}
        for scheme, round_trip in SCHEMES.items():
            pooled = []
            for weight in weights:
                w = weight.float().cpu()  # (out, in)
                rms = w.pow(2).mean().sqrt()
                pooled.append(((w - round_trip(w)).abs() / rms).flatten())
            errors[kind][scheme] = torch.cat(pooled)
    return errors


def relative_mse(errors: Tensor) -> float:
    """‖W - Ŵ‖² / ‖W‖² from the relative errors of `relative_errors` (the mean of their squares,
    since each is divided by the rms): 1e-4 is noise 40 dB below the weights."""
    return errors.double().pow(2).mean().item()


def plot_quantization_error(errors: dict[str, dict[str, Tensor]], title: str) -> Figure:
    """Left: the CDF of |w - ŵ| / rms(W) over all projections, one line per scheme. Right: the
    relative MSE per kind of projection and scheme, bars on a log scale."""
    figure = new_figure(12, 5)
    cdf_axes, bar_axes = figure.subplots(1, 2, width_ratios=(1, 1.15))
    schemes = list(SCHEMES)
    pooled = {
        scheme: torch.cat([by_scheme[scheme] for by_scheme in errors.values()])
        for scheme in schemes
    }
    for scheme, values in pooled.items():
        # The largest weight of a row lands on a level exactly: keep its error visible on a log axis.
        values = values.clamp(min=1e-6).sort().values
        share = torch.arange(1, len(values) + 1) / len(values)
        cdf_axes.plot(values, share, color=COLORS[scheme], lw=2, label=scheme)
        cdf_axes.plot(values.median(), 0.5, "o", color=COLORS[scheme], ms=5)
    cdf_axes.set_xscale("log")
    cdf_axes.set_xlim(1e-4, 1)
    cdf_axes.set_ylim(0, 1)
    cdf_axes.grid(alpha=0.3, which="both")
    cdf_axes.set_xlabel("|w - dequantize(quantize(w))| / rms of the weight's matrix")
    cdf_axes.set_ylabel("share of the weights with an error at most this")
    cdf_axes.set_title("the error of every projection weight (dots: medians)", fontsize=10)
    cdf_axes.legend(loc="upper left", fontsize=9)

    kinds = list(errors)
    width = 0.8 / len(schemes)
    for index, scheme in enumerate(schemes):
        x = [k + (index - (len(schemes) - 1) / 2) * width for k in range(len(kinds))]
        heights = [relative_mse(errors[kind][scheme]) for kind in kinds]
        bar_axes.bar(x, heights, width, color=COLORS[scheme], label=scheme)
    bar_axes.set_yscale("log")
    bar_axes.set_xticks(range(len(kinds)), kinds, fontsize=9)
    bar_axes.grid(alpha=0.3, axis="y", which="both")
    bar_axes.set_ylabel("‖W - Ŵ‖² / ‖W‖²  (lower is better)")
    bar_axes.set_title("the noise each scheme adds, per kind of projection", fontsize=10)
    figure.suptitle(title, fontsize=11)
    return figure
