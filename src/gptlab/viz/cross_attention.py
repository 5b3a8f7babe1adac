"""Cross-attention alignments of an encoder-decoder: which source tokens each output looked at.

Each row is one step of decoding, labelled with the token written at that step; each column is a
source token. In translation the bright cells trace a soft word alignment (Bahdanau et al. 2015,
figure 3); in the toy tasks they show the rule itself: the diagonal for copy, the anti-diagonal
for reverse.

As for the GPT's maps (`gptlab.viz.attention`), the weights are recomputed from outside: a
forward pre-hook captures each cross-attention's input (the normalised decoder state), and the
block's own projections and the reference `attention()` turn it and the encoder output into
weights. The model file knows nothing of pictures.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from gptlab.errors import ConfigError
from gptlab.nn.attention import attention
from gptlab.viz.attention import MAX_LABELLED_TOKENS, select_heads
from gptlab.viz.figure import display_token, new_figure, save_png


@torch.no_grad()
def cross_attention_weights(model, src: Tensor, tgt: Tensor) -> Tensor:
    """Cross-attention weights (n_layer, nh, T + 1, S) of every decoder head, for source ids (S,)
    and output ids (T,): row t is the step that writes output t (the last row writes EOS)."""
    c = model.config
    tgt_in = torch.cat([torch.tensor([c.bos_id], device=tgt.device), tgt])[None, :]  # (1, T+1)
    inputs: dict[int, Tensor] = {}
    hooks = [
        block.cross_attn.register_forward_pre_hook(
            lambda module, args, layer=layer: inputs.__setitem__(layer, args[0])
        )
        for layer, block in enumerate(model.decoder)
    ]
    try:
        memory = model.encode(src[None, :])  # (1, S, C)
        model.decode(tgt_in, memory)
    finally:
        for hook in hooks:
            hook.remove()
    maps = []
    for layer, block in enumerate(model.decoder):
        attn = block.cross_attn
        w_q = attn.c_attn.weight[: attn.n_embd]
        b_q = None if attn.c_attn.bias is None else attn.c_attn.bias[: attn.n_embd]
        q = F.linear(inputs[layer], w_q, b_q)  # (1, T+1, C)
        q = q.view(1, -1, attn.n_head, attn.n_embd // attn.n_head).transpose(1, 2)
        k, _ = attn.context_kv(memory)  # (1, nh, S, hs)
        _, weights = attention(q, k, k)  # (1, nh, T+1, S): values do not change the weights
        maps.append(weights[0])
    return torch.stack(maps).float().cpu()


def plot_cross_attention(
    model,
    src_tokenizer,
    tgt_tokenizer,
    text: str,
    out: str | Path,
    *,
    layer: int | None = None,
    head: int | None = None,
    num_beams: int = 1,
    title: str | None = None,
) -> Path:
    """Heatmaps of the cross-attention of `text`'s translation: output steps down, source
    tokens across, a panel per (layer, head); `layer` and `head` narrow it down."""
    from gptlab.generation.seq2seq import translate_ids

    if not text.strip():
        raise ConfigError("the text is empty: give the text whose translation to draw")
    device = model.lm_head.weight.device
    source = src_tokenizer.encode(text) + [src_tokenizer.eos_id]
    output = translate_ids(model, [source], num_beams=num_beams, device=device)[0]
    src = torch.tensor(source, device=device)
    weights = cross_attention_weights(model, src, torch.tensor(output, dtype=torch.long))
    n_layer, n_head, rows_count, S = weights.shape
    pairs = select_heads(n_layer, n_head, layer, head)
    src_labels = [display_token(src_tokenizer.decode([i])) for i in source]
    tgt_labels = [display_token(tgt_tokenizer.decode([i])) for i in [*output, tgt_tokenizer.eos_id]]
    layers = sorted({lay for lay, _ in pairs})
    heads = sorted({h for _, h in pairs})
    panel = 7.0 if len(pairs) == 1 else max(2.2, min(3.5, 14.0 / len(heads)))
    figure = new_figure(max(6.0, panel * len(heads) + 1.0), max(5.0, panel * len(layers) + 0.8))
    grid = figure.subplots(len(layers), len(heads), squeeze=False)
    labelled = max(S, rows_count) <= MAX_LABELLED_TOKENS
    font = 11 if len(pairs) == 1 else 8
    rotation = 90 if max(len(label) for label in src_labels) > 2 else 0
    for r, lay in enumerate(layers):
        for c, h in enumerate(heads):
            axes = grid[r][c]
            image = axes.imshow(weights[lay, h].numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
            axes.set_title(f"layer {lay}, head {h}", fontsize=font + 1)
            axes.set_xticks(range(S) if labelled else [])
            axes.set_yticks(range(rows_count) if labelled else [])
            bottom, left = r == len(layers) - 1, c == 0
            axes.set_xticklabels(
                src_labels if labelled and bottom else [], rotation=rotation, fontsize=font
            )
            axes.set_yticklabels(tgt_labels if labelled and left else [], fontsize=font)
    figure.supylabel("output: the token being written")
    figure.supxlabel("source token attended to")
    figure.colorbar(image, ax=grid, shrink=0.6, label="cross-attention weight")
    shown = text if len(text) <= 40 else text[:37] + "..."
    translation = tgt_tokenizer.decode(output, skip_special_tokens=True)
    figure.suptitle(title or f"cross-attention: {shown!r} -> {translation!r}")
    return save_png(figure, out)
