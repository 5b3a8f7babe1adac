# %% [markdown]
# # Lesson 7: embeddings and positional encodings
#
# A language model reads token ids: integers, whose size means nothing (token 50 is not "more"
# than token 49). An **embedding** gives each id a learned vector of C numbers, and training
# moves tokens that behave alike close together. Attention (lesson 8) then compares these
# vectors, but it compares them as a *set*: shuffle the tokens and it gives the same answers
# shuffled. A **positional encoding**, added to each token's vector, tells the model where the
# token stands.

# %%
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from lesson_mode import save_figure
from torch import nn

from gptlab.nn.position import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    TokenEmbedding,
)
from gptlab.viz.positions import cosine_similarity_matrix, plot_similarity, plot_table

torch.manual_seed(0)
V, C, T = 10, 8, 6  # vocabulary size, embedding width, sequence length

# %% [markdown]
# ## `nn.Embedding` is a table lookup
#
# `nn.Embedding(V, C)` holds a (V, C) matrix; looking up ids (B, T) gives (B, T, C), row i for
# token i. Mathematically it is a one-hot vector times the matrix, but indexing is far cheaper
# than multiplying by a vector of V - 1 zeros (V is 50,257 for GPT-2).

# %%
embedding = nn.Embedding(V, C)
ids = torch.tensor([[3, 1, 4, 1, 5, 9]])  # (B=1, T=6)
vectors = embedding(ids)  # (1, 6, C)
one_hot = F.one_hot(ids, V).float()  # (1, 6, V)
print(
    "lookup",
    tuple(vectors.shape),
    "| one-hot @ weight equal:",
    torch.allclose(one_hot @ embedding.weight, vectors),
)
print("the two 1s get the same vector:", torch.equal(vectors[0, 1], vectors[0, 3]))

# %% [markdown]
# ## Written by hand
#
# A parameter matrix and indexing: that is all of it. Because only the looked-up rows take part
# in the forward pass, only they receive gradient; the rows of tokens absent from a batch do not
# move (with plain SGD; AdamW's weight decay still shrinks them).


# %%
class HandEmbedding(nn.Module):
    """A (V, C) table of learned vectors; ids (...,) -> vectors (..., C)."""

    def __init__(self, vocab_size: int, n_embd: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(vocab_size, n_embd))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.weight[ids]


hand = HandEmbedding(V, C)
gptlab_embedding = TokenEmbedding(V, C)  # gptlab's, an nn.Embedding (optionally scaled by sqrt(C))
with torch.no_grad():
    gptlab_embedding.weight.copy_(hand.weight)
same_output = torch.equal(hand(ids), gptlab_embedding(ids))
hand(ids).sum().backward()
rows_with_gradient = hand.weight.grad.abs().sum(dim=1).nonzero().flatten().tolist()
print("hand-written equals gptlab's TokenEmbedding:", same_output)
print(
    "rows that received gradient:",
    rows_with_gradient,
    "= the ids used:",
    sorted(set(ids.flatten().tolist())),
)

# %% [markdown]
# ## Sinusoidal positional encodings
#
# The original Transformer (Vaswani et al. 2017, 3.5) adds fixed waves: dimension pair i of
# position p holds sin(p w_i) and cos(p w_i), with frequencies w_i = 10000^(-2i/C) from fast
# to very slow. Each position gets a unique pattern, like the digits of a clock with hands of
# different speeds. And moving k positions rotates each (sin, cos) pair by the angle k w_i,
# the same rotation whatever p is: PE[p + k] is a fixed linear function of PE[p], so attention
# can learn "three tokens back" once for every position.

# %%
sinusoidal = SinusoidalPositionalEncoding(context_length=64, n_embd=32)
table = sinusoidal.table  # (64, 32)

k = 3
frequencies = 10000 ** (-torch.arange(0, 32, 2) / 32)  # (16,)
cos, sin = torch.cos(k * frequencies), torch.sin(k * frequencies)
pairs = table.view(64, 16, 2)  # (T, C/2, (sin, cos))
# rotation by angle k w: sin(a + b) = sin a cos b + cos a sin b, cos(a + b) = cos a cos b - sin a sin b
rotated = torch.stack(
    [pairs[..., 0] * cos + pairs[..., 1] * sin, pairs[..., 1] * cos - pairs[..., 0] * sin], dim=-1
).view(64, 32)
shift_is_rotation = torch.allclose(rotated[:-k], table[k:], atol=1e-5)
print(f"PE[p + {k}] is PE[p] rotated pair by pair:", shift_is_rotation)

similarity = cosine_similarity_matrix(table)  # (64, 64)
print(f"similarity of position 10 to 11: {similarity[10, 11]:.3f}, to 40: {similarity[10, 40]:.3f}")

# %% [markdown]
# ## Learned positional embeddings
#
# GPT-2 simply learns a vector per position (`wpe`): a `LearnedPositionalEmbedding` is an
# `nn.Embedding` indexed by position instead of token. It can learn whatever the data needs,
# but it knows nothing past its `context_length`, and before training it is noise: no two
# positions are more alike than any other two. (`gptlab viz positions RUN_DIR` draws a trained
# one; the docs show one from a model trained on Shakespeare.)

# %%
learned = LearnedPositionalEmbedding(context_length=64, n_embd=32)
nn.init.normal_(learned.weight, std=0.02)  # GPT-2's initialisation
learned_table = learned.weight.detach()

figure, grid = plt.subplots(2, 2, figsize=(11, 9), layout="constrained")
plot_table(grid[0, 0], table, "sinusoidal encodings (64 x 32)")
plot_table(grid[0, 1], learned_table, "learned embeddings before training")
plot_similarity(grid[1, 0], table, "sinusoidal: cosine similarity of positions")
plot_similarity(grid[1, 1], learned_table, "learned, untrained: cosine similarity")
save_figure(figure, "07_positional_encodings.png")

# %% [markdown]
# ## Token + position
#
# The input of the first transformer block is the sum of the two, as in GPT's forward:
# `x = wte(idx) + wpe(positions)`, both (B, T, C). The same token at two positions now has two
# different vectors.

# %%
wte = TokenEmbedding(V, C)
wpe = LearnedPositionalEmbedding(T, C)
positions = torch.arange(T)  # (T,)
x = wte(ids) + wpe(positions)  # (1, T, C) + (T, C) broadcasts to (1, T, C)
print("input to the blocks:", tuple(x.shape))
print("token 1 at positions 1 and 3 now differs:", not torch.allclose(x[0, 1], x[0, 3]))

# %% [markdown]
# ## Check

# %%
assert torch.allclose(one_hot @ embedding.weight, vectors)
assert same_output and rows_with_gradient == sorted(set(ids.flatten().tolist()))
assert shift_is_rotation
assert similarity[10, 11] > similarity[10, 40], "nearby positions are more alike"
assert torch.allclose(similarity.diagonal(), torch.ones(64))
assert x.shape == (1, T, C) and not torch.allclose(x[0, 1], x[0, 3])
print("lesson 7 checks passed")
