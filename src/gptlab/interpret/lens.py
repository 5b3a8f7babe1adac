"""The logit lens (nostalgebraist 2020): what the model would predict if it stopped after layer l.

The residual stream is one vector space from the embeddings to the last block, and the model
reads its prediction off the end of it with `ln_f` and the unembedding. Reading the stream after
each block with that same final read-out shows the prediction taking shape layer by layer: in a
trained GPT the top token often settles on the final answer some blocks before the end. It is a
lens, not a measurement: earlier layers were never trained to be read this way, so their
distributions are only suggestive (the tuned lens, Belrose et al. 2023, learns a read-out per layer).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from gptlab.interpret.hooks import prompt_ids, run_with_cache
from gptlab.viz.figure import display_token, new_figure

MAX_POSITIONS_DRAWN = 24  # a longer prompt is drawn from its last 24 positions


@dataclass
class LogitLens:
    """The top-k next tokens read from the stream after each layer, at each position."""

    tokens: list[str]  # the prompt's tokens, as text
    layers: list[str]  # "embed", "block 0", ..., one per reading
    top_ids: Tensor  # (L, T, k)
    top_probs: Tensor  # (L, T, k)
    top_tokens: list[list[list[str]]]  # [L][T][k], the top ids as text
    next_probs: Tensor  # (L, T - 1): the probability of the prompt's own next token

    def to_dict(self) -> dict:
        return {
            "tokens": self.tokens,
            "layers": self.layers,
            "top_tokens": self.top_tokens,
            "top_probs": self.top_probs.tolist(),
            "next_token_probs": self.next_probs.tolist(),
        }


def lens_logits(model: nn.Module, resid: Tensor) -> Tensor:
    """Logits (..., V) read from a residual stream (..., C) by the model's own ln_f and head."""
    return model.lm_head(model.ln_f(resid))


@torch.no_grad()
def logit_lens(model: nn.Module, tokenizer, prompt: str, k: int = 5) -> LogitLens:
    """The logit lens of `prompt`: the top `k` tokens of every layer at every position."""
    ids = prompt_ids(model, tokenizer, prompt)  # (1, T)
    n_layer = len(model.h)
    names = ["blocks.0.resid_pre"] + [f"blocks.{i}.resid_post" for i in range(n_layer)]
    _, cache = run_with_cache(model, ids, names)
    layers, stream = cache.residual_stream()  # (L, 1, T, C)
    probs = torch.softmax(lens_logits(model, stream[:, 0]).float(), dim=-1)  # (L, T, V)
    top_probs, top_ids = probs.topk(min(k, probs.size(-1)), dim=-1)  # (L, T, k)
    targets = ids[0, 1:]  # (T - 1,)
    next_probs = probs[:, :-1].gather(-1, targets[None, :, None].expand(len(layers), -1, 1))
    decode = _decoder(tokenizer)
    return LogitLens(
        tokens=[decode(i) for i in ids[0].tolist()],
        layers=layers,
        top_ids=top_ids.cpu(),
        top_probs=top_probs.cpu(),
        top_tokens=[[[decode(i) for i in row] for row in layer] for layer in top_ids.tolist()],
        next_probs=next_probs[..., 0].cpu(),
    )


def _decoder(tokenizer):
    cache: dict[int, str] = {}

    def decode(i: int) -> str:
        if i not in cache:
            cache[i] = tokenizer.decode([i])
        return cache[i]

    return decode


def logit_lens_figure(lens: LogitLens, title: str | None = None) -> Figure:
    """A grid, layers up and positions across: each cell the top token read there, coloured by
    its probability; the column labels are the prompt's tokens (the cell predicts the next one)."""
    start = max(0, len(lens.tokens) - MAX_POSITIONS_DRAWN)
    top = lens.top_probs[:, start:, 0].numpy()  # (L, T')
    L, T = top.shape
    figure = new_figure(max(6.0, 0.75 * T + 2.5), max(3.5, 0.45 * L + 1.8))
    axes = figure.subplots()
    image = axes.imshow(top, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto", origin="lower")
    for layer in range(L):
        for t in range(T):
            word = display_token(lens.top_tokens[layer][start + t][0])[:8]
            colour = "white" if top[layer, t] > 0.6 else "black"
            axes.text(t, layer, word, ha="center", va="center", fontsize=8, color=colour)
    axes.set_yticks(range(L), lens.layers)
    axes.set_xticks(range(T), [display_token(t)[:10] for t in lens.tokens[start:]], rotation=90)
    axes.set_xlabel("position (its input token); each cell: the top next token read there")
    axes.set_ylabel("residual stream after")
    figure.colorbar(image, ax=axes, shrink=0.8, label="probability of the top token")
    figure.suptitle(title or "logit lens: ln_f and the unembedding applied after each layer")
    return figure
