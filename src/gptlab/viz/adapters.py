"""How low is the rank of a real fine-tune's weight update? The question LoRA bets on.

A full fine-tune moves each weight W of the base to W + ΔW. LoRA trains ΔW as a product of rank r
(`gptlab.adapters.lora`), which can only do as well as full fine-tuning where ΔW itself is close
to rank r. This module measures that on two models of the same shape, a base and its fully
fine-tuned copy:

- `update_spectrum`: the singular values of ΔW = W_tuned - W_base for every projection of
  every block, grouped by kind (the fused q/k/v `c_attn`, the attention output `c_proj`, the
  MLP's `c_fc` and `c_proj`);
- `energy_share`: the share of ΔW's energy (squared Frobenius norm, the sum of the squared
  singular values) that its top r singular directions hold: what the best rank-r update could
  capture (Eckart-Young);
- `plot_update_spectrum`: that share against r, one panel per kind, with the LoRA ranks marked
  and the share of a random matrix of the same shape for comparison.
"""

from __future__ import annotations

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from gptlab.errors import ConfigError
from gptlab.viz.figure import new_figure

# The projections of a GPT-2 block by kind: a label, and the end of the module's name.
PROJECTIONS = {
    "attn c_attn (q, k, v)": "attn.c_attn",
    "attn c_proj": "attn.c_proj",
    "mlp c_fc": "mlp.c_fc",
    "mlp c_proj": "mlp.c_proj",
}
LORA_RANKS = (4, 8, 16)


def projection_weights(model: nn.Module) -> dict[str, list[Tensor]]:
    """{kind: [weight (out, in) of block 0, block 1, ...]} of a GPT or a model around one."""
    found: dict[str, list[Tensor]] = {kind: [] for kind in PROJECTIONS}
    for name, param in model.named_parameters():
        for kind, suffix in PROJECTIONS.items():
            if name.endswith(f"{suffix}.weight"):
                found[kind].append(param.detach())
    return found


def update_spectrum(base_model: nn.Module, tuned_model: nn.Module) -> dict[str, Tensor]:
    """{kind: (n_layer, k) singular values of each block's ΔW = W_tuned - W_base, descending}."""
    base, tuned = projection_weights(base_model), projection_weights(tuned_model)
    spectrum = {}
    for kind in PROJECTIONS:
        if len(base[kind]) != len(tuned[kind]) or not base[kind]:
            raise ConfigError(
                f"the two models differ in their {kind} layers ({len(base[kind])} against "
                f"{len(tuned[kind])}): compare a model with its own fine-tuned copy"
            )
        values = []
        for before, after in zip(base[kind], tuned[kind]):
            if before.shape != after.shape:
                raise ConfigError(f"{kind}: {tuple(before.shape)} against {tuple(after.shape)}")
            delta = after.double().cpu() - before.double().cpu()  # (out, in)
            values.append(torch.linalg.svdvals(delta))  # (k,), k = min(out, in)
        spectrum[kind] = torch.stack(values)  # (n_layer, k)
    return spectrum


def energy_share(singular_values: Tensor) -> Tensor:
    """(..., k): entry r - 1 is the share of the energy in the top r singular directions."""
    energy = singular_values.double().pow(2)  # (..., k)
    total = energy.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    return energy.cumsum(dim=-1) / total


def random_share(shape: tuple[int, int], seed: int = 0) -> Tensor:
    """energy_share of a Gaussian matrix of `shape`: what a ΔW of no structure would give."""
    generator = torch.Generator().manual_seed(seed)
    return energy_share(torch.linalg.svdvals(torch.randn(shape, generator=generator)))


def plot_update_spectrum(
    spectrum: dict[str, Tensor],
    shapes: dict[str, tuple[int, int]],
    title: str,
    ranks: tuple[int, ...] = LORA_RANKS,
) -> Figure:
    """One panel per kind: each block's energy share against r, their mean, a random matrix's
    share, and vertical lines at the LoRA ranks, labelled with the mean share they capture."""
    figure = new_figure(11, 7.5)
    panels = figure.subplots(2, 2, sharey=True).ravel()
    for axes, (kind, values) in zip(panels, spectrum.items()):
        shares = energy_share(values)  # (n_layer, k)
        r = torch.arange(1, shares.size(-1) + 1)
        for layer, share in enumerate(shares):
            axes.plot(
                r,
                share,
                color="tab:blue",
                alpha=0.35,
                lw=1,
                label="one block" if not layer else None,
            )
        mean = shares.mean(dim=0)
        axes.plot(r, mean, color="tab:blue", lw=2.5, label="mean over blocks")
        axes.plot(
            r, random_share(shapes[kind]), color="grey", ls="--", label="a Gaussian random matrix"
        )
        for rank in ranks:
            axes.axvline(rank, color="tab:red", lw=1, alpha=0.7)
            axes.annotate(
                f"r={rank}: {mean[rank - 1]:.0%}",
                (rank, mean[rank - 1]),
                xytext=(4, -12),
                textcoords="offset points",
                fontsize=9,
                color="tab:red",
            )
        out, inp = shapes[kind]
        axes.set_title(f"{kind}: ΔW is {out} x {inp}, full rank {min(out, inp)}", fontsize=10)
        axes.set_xscale("log", base=2)
        ticks = [2**i for i in range(shares.size(-1).bit_length())]
        axes.set_xticks(ticks, [str(tick) for tick in ticks])
        axes.set_xlim(1, shares.size(-1))
        axes.set_ylim(0, 1.02)
        axes.grid(alpha=0.3)
        axes.set_xlabel("r, the number of top singular directions")
    panels[0].set_ylabel("share of ΔW's energy (‖ΔW‖²)")
    panels[2].set_ylabel("share of ΔW's energy (‖ΔW‖²)")
    panels[0].legend(loc="lower right", fontsize=9)
    figure.suptitle(title, fontsize=11)
    return figure


def projection_shapes(model: nn.Module) -> dict[str, tuple[int, int]]:
    """{kind: (out, in)} of the model's projections (those of block 0)."""
    return {kind: tuple(weights[0].shape) for kind, weights in projection_weights(model).items()}
