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
from gptlab.viz.attention import select_heads, weight_grid
from gptlab.viz.figure import display_token, save_png


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
    n_layer, n_head = weights.shape[:2]
    pairs = select_heads(n_layer, n_head, layer, head)
    src_labels = [display_token(src_tokenizer.decode([i])) for i in source]
    tgt_labels = [display_token(tgt_tokenizer.decode([i])) for i in [*output, tgt_tokenizer.eos_id]]
    figure = weight_grid(
        weights,
        pairs,
        row_labels=tgt_labels,
        column_labels=src_labels,
        axis_names=("output: the token being written", "source token attended to"),
        colour_label="cross-attention weight",
    )
    shown = text if len(text) <= 40 else text[:37] + "..."
    translation = tgt_tokenizer.decode(output, skip_special_tokens=True)
    figure.suptitle(title or f"cross-attention: {shown!r} -> {translation!r}")
    return save_png(figure, out)
