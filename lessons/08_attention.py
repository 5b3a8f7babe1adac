# %% [markdown]
# # Lesson 8: attention, step by step
#
# Attention lets each position gather information from the others. Every token emits three
# vectors: a **query** (what am I looking for?), a **key** (what do I offer?) and a **value**
# (what do I pass on?). The score of token t for token s is the dot product of t's query with
# s's key; a softmax over s turns scores into weights that sum to 1; t's output is the
# weighted average of the values. Masks decide which s each t may look at.
#
# We build it one step at a time, then check each step against gptlab's reference
# `attention()` and its `MultiHeadAttention`, the module inside every GPT block.

# %%
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from lesson_mode import save_figure
from torch import nn

from gptlab.nn.attention import (
    MultiHeadAttention,
    attention,
    attention_mask,
    causal_mask,
    padding_mask_from_lengths,
)

torch.manual_seed(0)
tokens = ["the", "cat", "sat", "on", "a", "mat"]
B, T, C = 1, len(tokens), 16
x = torch.randn(B, T, C)  # stand-ins for the token embeddings (lesson 7)

# %% [markdown]
# ## Queries, keys, values
#
# Three linear maps of the same input. (GPT-2 computes the three with one fused layer,
# `c_attn`, of width 3C, and splits the result.)

# %%
query_map, key_map, value_map = (nn.Linear(C, C) for _ in range(3))
q, k, v = query_map(x), key_map(x), value_map(x)  # each (B, T, C)
print("q, k, v:", tuple(q.shape))

# %% [markdown]
# ## Scores and why they are scaled
#
# `q @ k.transpose(-2, -1)` gives all T x T dot products at once. A dot product of two vectors
# of d independent unit-variance numbers has variance d: with d = 64 the scores spread over
# +-8 or more, and a softmax of such numbers is nearly one-hot, with nearly zero gradient for
# everything else. Dividing by sqrt(d) brings the variance back to 1 (Vaswani et al. 2017, 3.2.1).

# %%
scores = q @ k.transpose(-2, -1)  # (B, T, T): scores[b, t, s] = q_t . k_s
for d in (4, 64, 1024):
    a, b = torch.randn(10000, d), torch.randn(10000, d)
    dots = (a * b).sum(-1)
    print(
        f"d={d:5}: variance of q.k {dots.var():8.1f}, after / sqrt(d): {(dots / math.sqrt(d)).var():.2f}"
    )
scaled = scores / math.sqrt(C)

wide = torch.randn(T) * 8  # scores with the spread of unscaled d = 64
print(
    "softmax of unscaled scores, largest weight:",
    f"{torch.softmax(wide, -1).max():.3f}",
    "| scaled:",
    f"{torch.softmax(wide / 8, -1).max():.3f}",
)

# %% [markdown]
# ## Masks
#
# Masks are boolean: True where attention is allowed. Disallowed scores become -inf, so their
# softmax weight is exactly 0.
#
# - The **look-ahead** (causal) mask: token t may see tokens 0..t only. A GPT predicts the next
#   token at every position in parallel during training; without this mask each position could
#   simply read the answer.
# - The **padding** mask: sequences of a batch have different lengths and are padded to the
#   longest; no token may attend to the padding.
#
# gptlab's `attention_mask` combines both into (B, 1, T, T), broadcast over heads.

# %%
look_ahead = causal_mask(T)  # (T, T), lower triangle True
print(look_ahead.int())

lengths = torch.tensor([6, 4])  # a batch of two: the second has 2 padding tokens at the end
padding = padding_mask_from_lengths(lengths, max_length=T)  # (2, T)
both = attention_mask(look_ahead, padding)  # (2, 1, T, T)
print("padding mask of the second sequence:", padding[1].int().tolist())
print("combined mask, second sequence:\n", both[1, 0].int())

masked = scaled.masked_fill(~look_ahead, float("-inf"))  # (B, T, T)
weights = torch.softmax(masked, dim=-1)  # (B, T, T): each row sums to 1
output = weights @ v  # (B, T, C): each row a weighted average of the values
print("row sums:", weights.sum(-1)[0].tolist())
print("weights of 'sat' over the tokens:", [f"{w:.2f}" for w in weights[0, 2].tolist()])

# %% [markdown]
# Step by step equals gptlab's reference `attention()`, which in turn equals PyTorch's fused
# `F.scaled_dot_product_attention` (what the model runs, in a kernel that never stores the
# T x T weights).

# %%
reference_output, reference_weights = attention(q, k, v, look_ahead)
fused = F.scaled_dot_product_attention(q, k, v, attn_mask=look_ahead)
print(
    "equal to attention():",
    torch.allclose(output, reference_output, atol=1e-6),
    "| to F.scaled_dot_product_attention:",
    torch.allclose(output, fused, atol=1e-5),
)

# %% [markdown]
# ## Several heads
#
# One softmax can only average one way. Multi-head attention splits the C channels into nh
# heads of hs = C / nh channels, runs attention in each head separately (one head may follow
# the previous token, another the subject of the sentence), puts the heads' outputs side by
# side again, and mixes them with an output projection. The cost is the same as one head of
# width C.

# %%
nh = 4
hs = C // nh
q_heads = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
k_heads = k.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
v_heads = v.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
head_scores = q_heads @ k_heads.transpose(-2, -1) / math.sqrt(hs)  # (B, nh, T, T)
head_weights = torch.softmax(head_scores.masked_fill(~look_ahead, float("-inf")), dim=-1)
head_outputs = head_weights @ v_heads  # (B, nh, T, hs)
merged = head_outputs.transpose(1, 2).reshape(B, T, C)  # (B, T, C): heads side by side
output_map = nn.Linear(C, C)
multi_head_output = output_map(merged)

# gptlab's MultiHeadAttention holds the same maps: c_attn is [query; key; value] stacked, and
# c_proj is the output map. Given our weights it must compute the same thing.
module = MultiHeadAttention(C, nh)
with torch.no_grad():
    module.c_attn.weight.copy_(torch.cat([query_map.weight, key_map.weight, value_map.weight]))
    module.c_attn.bias.copy_(torch.cat([query_map.bias, key_map.bias, value_map.bias]))
    module.c_proj.weight.copy_(output_map.weight)
    module.c_proj.bias.copy_(output_map.bias)
    module_output = module(x, is_causal=True)
print(
    "equal to gptlab's MultiHeadAttention:",
    torch.allclose(multi_head_output, module_output, atol=1e-5),
)

# %%
figure, axes = plt.subplots(1, nh, figsize=(4 * nh, 4), layout="constrained")
for h in range(nh):
    image = axes[h].imshow(head_weights[0, h].detach(), cmap="viridis", vmin=0, vmax=1)
    axes[h].set_title(f"head {h}")
    axes[h].set_xticks(range(T), tokens, rotation=45)
    axes[h].set_yticks(range(T), tokens if h == 0 else [])
figure.colorbar(image, ax=axes, shrink=0.8, label="weight")
figure.suptitle("attention weights of four heads (untrained): rows attend to columns, never ahead")
save_figure(figure, "08_attention_heads.png")

# %% [markdown]
# ## Attention needs positions
#
# Without positional encodings, attention cannot tell order: permute the input tokens (with no
# mask) and the outputs are permuted the same way, nothing else changes. That is why lesson 7
# adds positions to the embeddings.

# %%
permutation = torch.tensor([3, 0, 5, 1, 4, 2])
unmasked, _ = attention(q, k, v)
permuted, _ = attention(q[:, permutation], k[:, permutation], v[:, permutation])
print(
    "permuting the inputs permutes the outputs:",
    torch.allclose(permuted, unmasked[:, permutation], atol=1e-6),
)

# %% [markdown]
# ## Check

# %%
assert torch.allclose(weights.sum(-1), torch.ones(B, T))
assert torch.all(weights[0].triu(1) == 0), "no token attends to a later one"
assert torch.allclose(output, reference_output, atol=1e-6) and torch.allclose(
    weights, reference_weights
)
assert torch.allclose(output, fused, atol=1e-5)
assert torch.allclose(multi_head_output, module_output, atol=1e-5)
assert both.shape == (2, 1, T, T) and torch.equal(both[0, 0], look_ahead)
assert not both[1, 0, :4, 4:].any(), "real tokens never attend to padding"
assert torch.allclose(permuted, unmasked[:, permutation], atol=1e-6)
print("lesson 8 checks passed")
