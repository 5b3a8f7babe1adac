"""Causal tests: activation patching between two prompts, and ablating heads on a corpus.

Activation patching (Meng et al. 2022; Wang et al. 2022) runs a corrupted prompt, one that
differs from the clean prompt where it matters ("The Eiffel Tower is in" vs "The Colosseum is
in"), and copies one activation from the clean run into it. Where the copy brings back the clean
answer, that activation carried the information. The metric is the logit difference between
the clean answer and another token (or the answer's log-probability), and each patch is shown as
the share of the clean-corrupted gap it restores: 1 restores it all, 0 changes nothing.

One forward pass patches a whole row of the grid: the corrupted prompt is repeated as a batch,
and row p patches position p (or head p), so a 12-layer model and a 20-token prompt take 12
passes, not 240.

Head ablation removes one head and measures the loss on real text: zero ablation sets its
output to 0, mean ablation to its mean over the text (which keeps the constant part of what it
writes, so it asks only what the head says about this input).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from gptlab.errors import ConfigError
from gptlab.interpret.hooks import (
    hooked,
    mean_heads,
    prompt_ids,
    run_with_cache,
    run_with_edits,
    zero_heads,
)
from gptlab.viz.figure import display_token, new_figure

# -- activation patching -----------------------------------------------------------------


@dataclass
class Patching:
    """The metric after each patch, raw and as the share of the clean-corrupted gap restored."""

    tokens: list[str]  # the corrupted prompt's tokens
    metric: str  # what was measured
    clean: float
    corrupted: float
    positions: Tensor  # (n_layer, T): resid_pre of layer l at position t patched
    heads: Tensor  # (n_layer, nh): head h's output (every position) of layer l patched

    def restored(self, values: Tensor) -> Tensor:
        """(value - corrupted) / (clean - corrupted): 1 is the clean run's metric, 0 the corrupted."""
        return (values - self.corrupted) / (self.clean - self.corrupted)

    def to_dict(self) -> dict:
        return {
            "tokens": self.tokens,
            "metric": self.metric,
            "clean": self.clean,
            "corrupted": self.corrupted,
            "by_layer_position": self.positions.tolist(),
            "by_head": self.heads.tolist(),
            "by_layer_position_restored": self.restored(self.positions).tolist(),
            "by_head_restored": self.restored(self.heads).tolist(),
        }


def answer_metric(answer: int, wrong: int | None) -> Callable[[Tensor], Tensor]:
    """logits (B, T, V) -> (B,): at the last position, the answer's logit minus the wrong
    token's, or the answer's log-probability when there is no wrong token."""

    def metric(logits: Tensor) -> Tensor:
        last = logits[:, -1].float()  # (B, V)
        if wrong is None:
            return torch.log_softmax(last, dim=-1)[:, answer]
        return last[:, answer] - last[:, wrong]

    return metric


def activation_patching(
    model: nn.Module,
    tokenizer,
    clean: str,
    corrupted: str,
    answer: int,
    wrong: int | None = None,
    progress: bool = False,
) -> Patching:
    """Patch each (layer, position) of the residual stream, and each head's output, from the
    clean prompt's run into the corrupted one's; see `Patching` for what comes back."""
    clean_ids = prompt_ids(model, tokenizer, clean, "the clean prompt")  # (1, T)
    corrupt_ids = prompt_ids(model, tokenizer, corrupted, "--corrupt")  # (1, T)
    if corrupt_ids.size(1) != clean_ids.size(1):
        raise ConfigError(
            f"the clean prompt is {clean_ids.size(1)} tokens and the corrupted one "
            f"{corrupt_ids.size(1)}: patching pairs positions, so they must be the same length"
        )
    clean_metric, corrupt_metric, positions, heads = patch_runs(
        model, clean_ids, corrupt_ids, answer_metric(answer, wrong), progress
    )
    return Patching(
        tokens=[tokenizer.decode([i]) for i in corrupt_ids[0].tolist()],
        metric=_metric_name(tokenizer, answer, wrong),
        clean=clean_metric,
        corrupted=corrupt_metric,
        positions=positions,
        heads=heads,
    )


@torch.no_grad()
def patch_runs(
    model: nn.Module,
    clean_ids: Tensor,
    corrupt_ids: Tensor,
    metric: Callable[[Tensor], Tensor],
    progress: bool = False,
) -> tuple[float, float, Tensor, Tensor]:
    """The work of `activation_patching` on ids (1, T) each: (clean metric, corrupted metric,
    (n_layer, T) by layer and position, (n_layer, nh) by head)."""
    T = clean_ids.size(1)
    clean_logits, cache = run_with_cache(
        model, clean_ids, ["blocks.*.resid_pre", "blocks.*.attn.z"]
    )
    corrupt_logits = run_with_edits(model, corrupt_ids, {}, all_logits=False)
    n_layer, n_head = len(model.h), model.h[0].attn.n_head
    layers = range(n_layer)
    if progress:
        from tqdm.auto import tqdm

        layers = tqdm(layers, desc="patching", unit="layer")
    positions, heads = [], []
    for layer in layers:
        # row p of the batch gets the clean stream at position p (diagonal patch)
        source = cache[f"blocks.{layer}.resid_pre"]  # (1, T, C)
        rows = corrupt_ids.expand(T, T)
        edit = _diagonal(source[0], T)
        edits = {f"blocks.{layer}.resid_pre": edit}
        positions.append(metric(run_with_edits(model, rows, edits, all_logits=False)))
        # row h gets the clean output of head h, at every position
        z = cache[f"blocks.{layer}.attn.z"]  # (1, T, nh, hs)
        rows = corrupt_ids.expand(n_head, T)
        edits = {f"blocks.{layer}.attn.z": _per_head(z[0])}
        heads.append(metric(run_with_edits(model, rows, edits, all_logits=False)))
    return (
        float(metric(clean_logits)[0]),
        float(metric(corrupt_logits)[0]),
        torch.stack(positions).float().cpu(),
        torch.stack(heads).float().cpu(),
    )


def _diagonal(source: Tensor, n: int):
    """Edit of a (n, T, ...) batch: row p takes `source` (T, ...) at position p."""

    def edit(value: Tensor) -> Tensor:
        value = value.clone()
        rows = torch.arange(n, device=value.device)
        value[rows, rows] = source.to(value.dtype)
        return value

    return edit


def _per_head(source: Tensor):
    """Edit of attn.z (nh, T, nh, hs): row h takes `source` (T, nh, hs)'s head h."""

    def edit(value: Tensor) -> Tensor:
        value = value.clone()
        rows = torch.arange(value.size(0), device=value.device)
        value[rows, :, rows] = source.transpose(0, 1).to(value.dtype)  # (nh, T, hs)
        return value

    return edit


def _metric_name(tokenizer, answer: int, wrong: int | None) -> str:
    name = repr(tokenizer.decode([answer]))
    if wrong is None:
        return f"log p({name})"
    return f"logit {name} - logit {tokenizer.decode([wrong])!r}"


def patching_figure(patching: Patching) -> Figure:
    """Two heatmaps: the share of the gap each (layer, position) patch restores, and each head."""
    by_position = patching.restored(patching.positions).numpy()
    by_head = patching.restored(patching.heads).numpy()
    n_layer, T = by_position.shape
    figure = new_figure(
        max(9.0, 0.5 * T + 0.5 * by_head.shape[1] + 4.0), max(4.0, 0.4 * n_layer + 2.5)
    )
    left, right = figure.subplots(
        1, 2, gridspec_kw={"width_ratios": [max(T, 4), max(by_head.shape[1], 4)]}
    )
    for axes, values, title in (
        (left, by_position, "residual stream (resid_pre) by layer and position"),
        (right, by_head, "each head's output, every position"),
    ):
        image = axes.imshow(values, cmap="RdBu", vmin=-1.0, vmax=1.0, aspect="auto")
        axes.set_title(title, fontsize=10)
        axes.set_ylabel("layer")
        axes.set_yticks(range(n_layer))
    left.set_xticks(range(T), [display_token(t)[:10] for t in patching.tokens], rotation=90)
    right.set_xlabel("head")
    right.set_xticks(range(by_head.shape[1]))
    figure.colorbar(image, ax=[left, right], shrink=0.8, label="share of the gap restored")
    figure.suptitle(
        f"activation patching, clean into corrupted: {patching.metric} "
        f"{patching.clean:.2f} clean, {patching.corrupted:.2f} corrupted",
        fontsize=10,
    )
    return figure


# -- head ablation -----------------------------------------------------------------------


@dataclass
class Ablation:
    """The mean loss on a corpus with each head ablated, against the intact model's."""

    method: str  # "zero" or "mean"
    base_loss: float
    losses: Tensor  # (n_layer, nh)
    tokens: int  # how many tokens the losses average over

    @property
    def deltas(self) -> Tensor:
        return self.losses - self.base_loss

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "base_loss": self.base_loss,
            "losses": self.losses.tolist(),
            "loss_change": self.deltas.tolist(),
            "tokens": self.tokens,
        }


@torch.no_grad()
def head_ablation(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    method: str = "zero",
    progress: bool = False,
) -> Ablation:
    """The corpus loss with each head, one at a time, zeroed or set to its mean over `batches`
    (a list of (x, y) windows, as `TokenData.eval_batches` gives)."""
    if method not in ("zero", "mean"):
        raise ConfigError(f"--method must be zero or mean, got {method!r}")
    batches = list(batches)
    if not batches:
        raise ConfigError("no text to measure the loss on")
    n_layer, n_head = len(model.h), model.h[0].attn.n_head
    means = _mean_head_outputs(model, batches) if method == "mean" else None
    base = _mean_loss(model, batches, {})
    pairs = [(layer, head) for layer in range(n_layer) for head in range(n_head)]
    if progress:
        from tqdm.auto import tqdm

        pairs = tqdm(pairs, desc=f"{method}-ablating", unit="head")
    losses = torch.zeros(n_layer, n_head)
    for layer, head in pairs:
        edit = zero_heads(head) if means is None else mean_heads(means[layer], head)
        losses[layer, head] = _mean_loss(model, batches, {f"blocks.{layer}.attn.z": edit})
    tokens = sum(x.numel() for x, _ in batches)
    return Ablation(method=method, base_loss=base, losses=losses, tokens=tokens)


def _mean_loss(model: nn.Module, batches, edits: dict) -> float:
    total, count = 0.0, 0
    with hooked(model, (), edits):
        for x, y in batches:
            _, loss = model(x, y)
            total += float(loss) * y.numel()
            count += y.numel()
    return total / count


def _mean_head_outputs(model: nn.Module, batches) -> list[Tensor]:
    """Each layer's mean head outputs (nh, hs) over every position of `batches`."""
    sums: list[Tensor] = [0.0] * len(model.h)
    count = 0
    for x, _ in batches:
        _, cache = run_with_cache(model, x, "blocks.*.attn.z")
        for layer in range(len(model.h)):
            sums[layer] = sums[layer] + cache[f"blocks.{layer}.attn.z"].float().sum(dim=(0, 1))
        count += x.numel()
    return [s / count for s in sums]


def ablation_figure(ablation: Ablation, title: str | None = None) -> Figure:
    """A heatmap (layer down, head across) of the loss change when each head is ablated."""
    deltas = ablation.deltas.numpy()
    n_layer, n_head = deltas.shape
    figure = new_figure(max(6.0, 0.7 * n_head + 3.0), max(3.5, 0.45 * n_layer + 2.0))
    axes = figure.subplots()
    bound = max(float(abs(deltas).max()), 1e-6)
    image = axes.imshow(deltas, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    if deltas.size <= 200:
        for layer in range(n_layer):
            for head in range(n_head):
                axes.text(
                    head, layer, f"{deltas[layer, head]:+.3f}", ha="center", va="center", fontsize=7
                )
    axes.set_xticks(range(n_head))
    axes.set_yticks(range(n_layer))
    axes.set_xlabel("head")
    axes.set_ylabel("layer")
    figure.colorbar(image, ax=axes, shrink=0.8, label="loss change (nats/token)")
    figure.suptitle(
        title
        or f"{ablation.method}-ablating each head: loss {ablation.base_loss:.3f} intact, "
        f"over {ablation.tokens:,} tokens",
        fontsize=10,
    )
    return figure
