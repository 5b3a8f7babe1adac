"""Direct logit attribution: how much each head and MLP writes, directly, toward one token.

The final residual stream is a sum: embeddings, plus each block's attention output (each head's
result, plus c_proj's bias), plus each MLP's output. The logit of token w is
ln_f(x) . W_U[w], and ln_f is linear but for one thing, its division by the stream's standard
deviation. Freezing that divisor at its value on the final stream (as is customary, Elhage et
al. 2021) makes the logit a sum of one term per component:

    logit_w = sum_c  (c - mean(c)) / s * gamma . W_U[w]   +   beta . W_U[w]

where s = sqrt(var(x_final) + eps), and gamma, beta are ln_f's weight and bias. The terms add up
to the model's logit exactly. "Direct" means through the residual stream only: a head whose
output is read by a later head or MLP and does its work through it scores near zero here;
activation patching (`gptlab.interpret.patching`) sees that indirect effect.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from gptlab.errors import ConfigError
from gptlab.interpret.hooks import prompt_ids, run_with_cache
from gptlab.viz.figure import display_token, new_figure


@dataclass
class Attribution:
    """Each component's direct contribution to a token's logit (or a logit difference)."""

    target: str  # "' Paris'" or "' Paris' - ' Rome'"
    position: int
    heads: Tensor  # (n_layer, nh)
    attn_bias: Tensor  # (n_layer,): c_proj's bias of each attention layer
    mlps: Tensor  # (n_layer,)
    embed: float  # token + position embeddings
    ln_bias: float  # ln_f's bias through the unembedding
    logit: float  # the model's own logit (or difference), which the terms sum to

    @property
    def total(self) -> float:
        parts = self.heads.sum() + self.attn_bias.sum() + self.mlps.sum()
        return float(parts) + self.embed + self.ln_bias

    def to_dict(self) -> dict:
        return {
            "target": self.target,
            "position": self.position,
            "heads": self.heads.tolist(),
            "attn_bias": self.attn_bias.tolist(),
            "mlps": self.mlps.tolist(),
            "embed": self.embed,
            "ln_bias": self.ln_bias,
            "logit": self.logit,
            "sum_of_terms": self.total,
        }


def single_token(tokenizer, text: str, what: str = "--token") -> int:
    """The id of `text`, which must be exactly one token of the vocabulary."""
    if not text:
        raise ConfigError(f"{what} is empty: give the token to attribute")
    ids = tokenizer.encode(text)
    if len(ids) != 1:
        pieces = " + ".join(repr(tokenizer.decode([i])) for i in ids)
        raise ConfigError(
            f"{what} {text!r} is {len(ids)} tokens ({pieces}), not one: give a single token "
            "(GPT-2 tokens usually start with their space, as in ' Paris')"
        )
    return ids[0]


@torch.no_grad()
def direct_logit_attribution(
    model: nn.Module,
    tokenizer,
    prompt: str,
    token: str,
    versus: str | None = None,
    position: int = -1,
) -> Attribution:
    """The direct contribution of every head, MLP and embedding to the logit of `token` (minus
    that of `versus`, if given) at `position` of `prompt` (default: the last, the next token)."""
    ids = prompt_ids(model, tokenizer, prompt)  # (1, T)
    T = ids.size(1)
    if not -T <= position < T:
        raise ConfigError(f"--position must be in {-T}..{T - 1} for this {T}-token prompt")
    position %= T
    target = single_token(tokenizer, token)
    unembed = model.lm_head.weight[target].float()  # (C,)
    label = repr(token)
    other = None if versus is None else single_token(tokenizer, versus, "--versus")
    if other is not None:
        unembed = unembed - model.lm_head.weight[other].float()
        label = f"{token!r} - {versus!r}"
    logits, cache = run_with_cache(
        model,
        ids,
        ["embed", "pos_embed", "blocks.*.attn.z", "blocks.*.mlp.out", "blocks.*.resid_post"],
    )
    n_layer = len(model.h)
    ln = model.ln_f
    final = cache[f"blocks.{n_layer - 1}.resid_post"][0, position].float()  # (C,)
    scale = torch.sqrt(final.var(unbiased=False) + ln.eps)  # frozen at the final stream
    direction = ln.weight.float() * unembed / scale  # (C,)

    def through(c: Tensor) -> Tensor:
        """(..., C) component -> (...) its direct term: centred, scaled, read out."""
        c = c.float()
        return (c - c.mean(dim=-1, keepdim=True)) @ direction

    heads = torch.stack(
        [through(cache[f"blocks.{i}.attn.result"][0, position]) for i in range(n_layer)]
    )  # (n_layer, nh)
    biases = torch.stack(
        [
            through(model.h[i].attn.c_proj.bias)
            if model.h[i].attn.c_proj.bias is not None
            else torch.zeros((), device=final.device)
            for i in range(n_layer)
        ]
    )
    mlps = torch.stack([through(cache[f"blocks.{i}.mlp.out"][0, position]) for i in range(n_layer)])
    positions = cache["pos_embed"]  # (T, C), or (B, T, C) when each row has its own positions
    positions = positions[0] if positions.dim() == 3 else positions
    embed = through(cache["embed"][0, position] + positions[position])
    ln_bias = float(ln.bias.float() @ unembed) if ln.bias is not None else 0.0
    own = logits[0, position, target].float()
    if other is not None:
        own = own - logits[0, position, other].float()
    return Attribution(
        target=label,
        position=position,
        heads=heads.cpu(),
        attn_bias=biases.cpu(),
        mlps=mlps.cpu(),
        embed=float(embed),
        ln_bias=ln_bias,
        logit=float(own),
    )


def attribution_figure(attribution: Attribution, tokens: list[str] | None = None) -> Figure:
    """A heatmap, layer down, heads then MLP across, of each component's direct term."""
    n_layer, n_head = attribution.heads.shape
    values = torch.cat([attribution.heads, attribution.mlps[:, None]], dim=1).numpy()
    bound = max(float(abs(values).max()), 1e-6)
    figure = new_figure(max(6.0, 0.7 * (n_head + 1) + 3.0), max(3.5, 0.45 * n_layer + 2.2))
    axes = figure.subplots()
    image = axes.imshow(values, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
    if values.size <= 200:
        for layer in range(n_layer):
            for column in range(n_head + 1):
                axes.text(
                    column,
                    layer,
                    f"{values[layer, column]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                )
    axes.set_xticks(range(n_head + 1), [str(h) for h in range(n_head)] + ["MLP"])
    axes.set_yticks(range(n_layer))
    axes.set_xlabel("head (and the layer's MLP)")
    axes.set_ylabel("layer")
    figure.colorbar(image, ax=axes, shrink=0.8, label="direct contribution to the logit")
    where = f" after {display_token(tokens[attribution.position])!r}" if tokens else ""
    figure.suptitle(
        f"direct logit attribution of {attribution.target}{where}: logit {attribution.logit:.2f}"
        f" = embeddings {attribution.embed:.2f} + the cells + biases "
        f"{attribution.attn_bias.sum().item() + attribution.ln_bias:.2f}\n"
        "(ln_f's scale frozen at the final residual stream)",
        fontsize=10,
    )
    return figure
