# %% [markdown]
# # Lesson 10: LoRA and prompt tuning
#
# Full fine-tuning (lesson 9) trains every weight and saves a whole new copy of the model: for
# GPT-2 124M that is 500 MB per task, with optimizer state for all 124M numbers while training.
# **Parameter-efficient** fine-tuning freezes the pretrained model and trains a few new
# parameters beside it instead. This lesson builds the two best known kinds:
#
# - **LoRA** (Hu et al. 2021): a low-rank update of chosen weight matrices;
# - **prompt tuning** (Lester et al. 2021): a few trained vectors before the input.
#
# We build LoRA by hand on one `nn.Linear`, train it where a low-rank update is all that is
# needed, and count what it saves; then we use gptlab's `gptlab.adapters` on a tiny GPT that
# we first pretrain on a toy task, adapt to a new one, merge, and steer with a soft prompt.

# %%
import copy

import torch
import torch.nn.functional as F
from lesson_mode import quick_or_full
from torch import nn

from gptlab.adapters import (
    LoRAConfig,
    PromptTuned,
    PromptTuningConfig,
    add_lora,
    freeze_base,
    merge_lora,
    set_adapter,
    unmerge_lora,
)
from gptlab.config import GPTConfig
from gptlab.generation import GenerationConfig, generate
from gptlab.models.gpt import GPT

torch.manual_seed(0)
STEPS = quick_or_full(150, 600)  # optimizer steps of each training run on the tiny GPT

# %% [markdown]
# ## LoRA by hand
#
# A fine-tune changes a pretrained weight W (out x in) into W + ΔW. LoRA bets that ΔW has a
# low rank r and writes it as the product of two thin matrices, B (out x r) and A (r x in):
#
#     y = x Wᵀ + b + (alpha / r) · x Aᵀ Bᵀ
#
# W and b stay frozen; only A and B train, r · (in + out) numbers instead of in · out. A starts
# random and B at **zero**, so the product BA is zero: a new adapter changes nothing, and
# training starts exactly from the pretrained model. (Both at zero would not work: the gradient
# of B is proportional to A, and that of A to B, so neither would ever move.)


# %%
class LoRALinear(nn.Module):
    """A frozen Linear plus a trainable low-rank update (alpha / r) B A."""

    def __init__(self, linear: nn.Linear, r: int, alpha: float):
        super().__init__()
        self.linear = linear
        for p in self.linear.parameters():
            p.requires_grad_(False)  # the pretrained weights stay as they are
        self.A = nn.Parameter(torch.randn(r, linear.in_features) / linear.in_features**0.5)
        self.B = nn.Parameter(torch.zeros(linear.out_features, r))
        self.scale = alpha / r

    def forward(self, x):
        return self.linear(x) + (x @ self.A.t()) @ self.B.t() * self.scale  # (..., out)

    def delta_weight(self):
        return self.B @ self.A * self.scale  # (out, in)


D = 64  # in and out features
pretrained = nn.Linear(D, D)
lora = LoRALinear(copy.deepcopy(pretrained), r=2, alpha=2)
x = torch.randn(8, D)
unchanged = torch.equal(lora(x), pretrained(x))
print("a new adapter changes nothing:", unchanged)

full_count = sum(p.numel() for p in pretrained.parameters())
lora_count = sum(p.numel() for p in lora.parameters() if p.requires_grad)
print(f"full fine-tuning trains {full_count:,} numbers, LoRA r=2 trains {lora_count:,}")

# %% [markdown]
# ## A task that a low-rank update solves
#
# Suppose the pretrained layer is almost right for a new task: the target map differs from W by
# a change of rank 2, W* = W + U Vᵀ. Data: random inputs x and the target outputs x W*ᵀ + b.
# We train adapters of rank 1, 2 and 4 with Adam on the mean squared error. Rank 1 cannot
# express a rank-2 change; rank 2 and more can, and learn it while W never moves.

# %%
U, V = torch.randn(D, 2), torch.randn(D, 2)
true_delta = U @ V.t() / D**0.5  # (D, D), rank 2


def target(x):
    return pretrained(x) + x @ true_delta.t()


def fit(layer: LoRALinear, steps: int, lr: float) -> float:
    """Train the adapter's A and B (only they) to make the layer match `target`; the last loss."""
    optimizer = torch.optim.Adam([layer.A, layer.B], lr=lr)
    for _ in range(steps):
        batch = torch.randn(64, D)
        loss = F.mse_loss(layer(batch), target(batch))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return loss.item()


def train_adapter(r: int, steps: int = quick_or_full(200, 1000)):
    torch.manual_seed(1)
    layer = LoRALinear(copy.deepcopy(pretrained), r=r, alpha=r)
    loss = fit(layer, steps, lr=1e-2)
    error = (layer.delta_weight() - true_delta).norm() / true_delta.norm()
    print(f"r={r}: final loss {loss:.5f}, ΔW off by {error:.1%} of the true change")
    return layer, loss


adapters = {r: train_adapter(r) for r in (1, 2, 4)}
frozen_kept = torch.equal(adapters[2][0].linear.weight, pretrained.weight)
print("the pretrained W did not move:", frozen_kept)

# %% [markdown]
# ## Why scale by alpha / r
#
# Adam moves every parameter by about the learning rate on its first steps, whatever the size
# of its gradient. Each entry of BA sums r products, so without a scale a larger rank makes a
# larger update at the same learning rate, and a learning rate tuned for r = 8 is too large for
# r = 64. LoRA divides by r, so that with alpha fixed "we do not need to retune the learning
# rate when we vary r" (Hu et al. 2021, section 4.1). Measured here after 5 Adam steps from a
# new adapter, that over-corrects a little: the update now *shrinks* as r grows, which is why
# rsLoRA (Kalajdzievski 2023) scales by alpha / sqrt(r) instead. gptlab, like peft's default,
# uses alpha / r, so a learning rate and alpha carry over from other LoRA recipes.


# %%
def update_size(r: int, scale: float, steps: int = 5) -> float:
    """||ΔW|| after a few Adam steps from a new adapter of rank r scaled by `scale`."""
    torch.manual_seed(2)
    layer = LoRALinear(copy.deepcopy(pretrained), r=r, alpha=1)
    layer.scale = scale
    fit(layer, steps, lr=1e-3)
    return layer.delta_weight().norm().item()


ranks = (2, 8, 32)
sizes = {  # alpha chosen so that every scale is 1 at r = 8
    "1": [update_size(r, 1.0) for r in ranks],
    "alpha/r": [update_size(r, 8 / r) for r in ranks],
    "alpha/sqrt(r)": [update_size(r, (8 / r) ** 0.5) for r in ranks],
}
for name, values in sizes.items():
    print(f"scale {name:>13}:", "  ".join(f"r={r}: {v:.4f}" for r, v in zip(ranks, values)))

# %% [markdown]
# ## A tiny GPT to fine-tune
#
# To adapt a GPT we first need a pretrained one. Ours learns a toy language: a marker token
# says the step (16 means "+1", 17 means "+2"), then numbers count up by that step modulo 16:
# `[17, 5, 7, 9, 11, ...]`. After a few hundred steps it continues any sequence of either kind.

# %%
NUMBERS, T = 16, 12
PLUS = {1: 16, 2: 17}  # the marker token of each step


def sequences(step: int, batch: int, marker: bool = True):
    """(batch, T) rows counting up by `step` mod 16 from random starts, after the marker."""
    start = torch.randint(0, NUMBERS, (batch, 1))
    numbers = (start + step * torch.arange(T - 1)) % NUMBERS  # (batch, T - 1)
    if not marker:
        return numbers
    return torch.cat([torch.full((batch, 1), PLUS[step]), numbers], dim=1)  # (batch, T)


def lm_loss(model, rows):
    _, loss = model(rows[:, :-1], rows[:, 1:])
    return loss


def train(model, make_rows, params, steps=STEPS, lr=3e-3):
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        loss = lm_loss(model, make_rows())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


@torch.no_grad()
def accuracy(model, rows, skip: int):
    """The share of next-token predictions that are right, after the first `skip` tokens
    (the first number of a row cannot be guessed)."""
    logits, _ = model(rows[:, :-1], all_logits=True)  # (B, T - 1, V)
    right = logits.argmax(-1)[:, skip:] == rows[:, 1 + skip :]
    return right.float().mean().item()


config = GPTConfig(vocab_size=18, context_length=16, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
torch.manual_seed(3)
base = GPT(config)


def mixed():
    return torch.cat([sequences(1, 16), sequences(2, 16)])  # (32, T): half +1, half +2


train(base, mixed, base.parameters(), steps=quick_or_full(300, 1000))
test_plus1, test_plus2 = sequences(1, 256), sequences(2, 256)
base_accuracy = min(accuracy(base, test_plus1, 1), accuracy(base, test_plus2, 1))
print(f"pretrained: next-token accuracy {base_accuracy:.1%} on +1 and +2 sequences")

# %% [markdown]
# ## LoRA with gptlab
#
# The new task: count up by **3**, a step the base has never seen, with no marker. gptlab's
# `add_lora` applies LoRA to a built model from outside: each targeted Linear gets a child
# module `lora` with A and B, and a forward hook that adds the update to its output. The model's
# own code is untouched and its parameter names stay the same, so its weights load and export
# as before. `targets` names the layers: here the fused query-key-value projection `c_attn`,
# the attention output and both MLP layers of every block. `freeze_base` then lets only the
# adapter train.


# %%
def plus3(batch: int = 32):
    return sequences(3, batch, marker=False)


test_plus3 = plus3(256)
model = copy.deepcopy(base)
adapted_layers = add_lora(
    model, LoRAConfig(r=4, alpha=8, dropout=0.0, targets=("c_attn", "c_proj", "c_fc"))
)
print("adapted layers:", adapted_layers[:4], "...")
print("a base name is unchanged:", "h.0.attn.c_attn.weight" in dict(model.named_parameters()))
print(
    "h.0.attn.c_attn's tensors:", [n for n, _ in model.named_parameters() if ".0.attn.c_attn" in n]
)
same_at_start = torch.equal(model(test_plus3)[0], base(test_plus3)[0])
trainable, total = freeze_base(model)
print(f"LoRA trains {trainable:,} of {total:,} parameters ({trainable / total:.1%})")

before = accuracy(model, test_plus3, 1)
train(model, plus3, [p for p in model.parameters() if p.requires_grad], lr=1e-2)
lora_accuracy = accuracy(model, test_plus3, 1)
print(f"+3 accuracy: base {before:.1%}, after LoRA {lora_accuracy:.1%}")

full = copy.deepcopy(base)
train(full, plus3, full.parameters())
full_accuracy = accuracy(full, test_plus3, 1)
gpt_count = sum(p.numel() for p in full.parameters())
print(f"full fine-tuning: {gpt_count:,} trainable, +3 accuracy {full_accuracy:.1%}")

# %% [markdown]
# ## Merging
#
# At inference the hook costs two small extra products per layer. `merge_lora` removes even
# that: it adds ΔW = (alpha / r) BA to W once and takes the hook off, so the merged model costs
# exactly what the plain model costs, and gives the same outputs. `unmerge_lora` subtracts ΔW
# again, which brings the base back (up to float rounding) and the hook with it. `gptlab merge
# RUN --out DIR` does this and writes a plain model.

# %%
with torch.no_grad():
    hooked = model(test_plus3, all_logits=True)[0]
    merged_layers = merge_lora(model)
    merged = model(test_plus3, all_logits=True)[0]
    hooks_after_merge = sum(len(m._forward_hooks) for m in model.modules())
    unmerge_lora(model)
    unmerged = model(test_plus3, all_logits=True)[0]
print(f"merged {merged_layers} layers; forward hooks left: {hooks_after_merge}")
print("merged = with the hook:", torch.allclose(hooked, merged, atol=1e-5))
print("unmerged = with the hook:", torch.allclose(hooked, unmerged, atol=1e-5))

# %% [markdown]
# ## Several adapters on one base
#
# One frozen base can carry many adapters, one per task, each a few thousand numbers:
# `add_lora(model, config, name)` adds one more, and `set_adapter` picks which one runs
# (`None`: the plain base). Here a second adapter, trained on "+1" sequences without their
# marker, sits beside the "+3" one.


# %%
def plus1_unmarked(batch: int = 32):
    return sequences(1, batch, marker=False)


add_lora(model, LoRAConfig(r=4, alpha=8, dropout=0.0, targets=("c_attn",)), name="plus1")
freeze_base(model)
train(model, plus1_unmarked, [p for n, p in model.named_parameters() if ".plus1." in n], lr=1e-2)
switched = {}
for name in ("default", "plus1", None):
    set_adapter(model, name)
    switched[name] = (accuracy(model, test_plus3, 1), accuracy(model, plus1_unmarked(256), 1))
    print(f"adapter {name!s:>7}: +3 accuracy {switched[name][0]:.1%}, +1 {switched[name][1]:.1%}")

# %% [markdown]
# ## Prompt tuning
#
# Prompt tuning keeps *every* weight frozen and trains only N vectors of the embedding's width
# C, put before the input as if they were the embeddings of N extra tokens: N x C numbers. No
# word has these embeddings, so the "soft prompt" can say what no text can. gptlab's
# `PromptTuned` wraps a GPT: the virtual tokens are ids past the vocabulary (18, 19, ... here)
# that a replaced token embedding looks up in the prompt, so they take positions 0..N-1 and go
# through the model's own forward. When decoding, their keys and values are computed once and
# kept in the first N slots of the KV cache, so the prompt costs nothing per new token; the
# context left for real tokens shrinks by N.
#
# A soft prompt can only steer what the frozen model already does, so it suits a task the base
# knows how to do: here, counting by 2 *without* the marker that asked for it.


# %%
def plus2_unmarked(batch: int = 32):
    return sequences(2, batch, marker=False)


N = 2
torch.manual_seed(4)
prompted = PromptTuned(copy.deepcopy(base), PromptTuningConfig(num_tokens=N))
trainable_prompt, _ = freeze_base(prompted)
print(f"prompt tuning trains {trainable_prompt:,} numbers (N x C = {N} x {config.n_embd})")
print("context for real tokens:", prompted.config.context_length, "of", config.context_length)
test_plus2_unmarked = plus2_unmarked(256)
plain_plus2 = accuracy(base, test_plus2_unmarked, 1)
train(prompted, plus2_unmarked, [prompted.prompt], lr=3e-2)
prompt_plus2 = accuracy(prompted, test_plus2_unmarked, 1)
print(f"+2 without the marker: base {plain_plus2:.1%}, with the soft prompt {prompt_plus2:.1%}")

# %% [markdown]
# Decoding goes through the KV cache that `new_kv_cache` prefills with the prompt; greedy
# tokens from `gptlab.generation.generate` match a loop that runs the whole sequence (prompt
# included) through the model at each step without a cache:

# %%
start = [4]
cached = generate(prompted, [start], GenerationConfig(max_new_tokens=8, strategy="greedy"))[0]
row = torch.tensor([start])
with torch.no_grad():
    for _ in range(8):
        logits, _ = prompted(row)  # (1, 1, V): the last position's scores
        row = torch.cat([row, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
uncached = row[0, 1:].tolist()
print("with the cache:   ", cached)
print("without the cache:", uncached)

# %% [markdown]
# When is a prompt enough? When the base can already do the task and only needs to be told
# which one: a soft prompt has no way to change what a layer computes. LoRA changes the layers
# themselves and can teach something new (the "+3" task above), for more parameters: 4,096
# here against the prompt's 64. The docs page "Adapters: LoRA and prompt tuning" has the commands, the file
# formats and measured figures.

# %% [markdown]
# ## Check

# %%
assert unchanged, "B starts at zero, so a new adapter is the identity change"
assert lora_count == 2 * (D + D) and full_count > 10 * lora_count
assert adapters[2][1] < 1e-3 and adapters[4][1] < 1e-3, "rank 2 and more solve a rank-2 task"
assert adapters[1][1] > 10 * adapters[2][1], "rank 1 cannot"
assert frozen_kept
assert sizes["1"][-1] > 3 * sizes["1"][0], "unscaled, the update grows with the rank"
assert sizes["alpha/r"][-1] < sizes["alpha/r"][0], "divided by r, it no longer does"
assert base_accuracy > 0.95
assert same_at_start and before < 0.5 and lora_accuracy > 0.9 and full_accuracy > 0.9
assert gpt_count == total - trainable, "full fine-tuning trains every weight of the base"
assert trainable == 2 * 4 * (128 + 64 + 160 + 160), "blocks x r x (in + out) of 4 layers"
assert merged_layers == 4 * config.n_layer and hooks_after_merge == 0
assert torch.allclose(hooked, merged, atol=1e-5) and torch.allclose(hooked, unmerged, atol=1e-5)
assert switched["plus1"][1] > 0.9 and switched["default"][0] == lora_accuracy
assert trainable_prompt == N * config.n_embd
assert prompted.config.context_length == config.context_length - N
assert prompt_plus2 > plain_plus2 and prompt_plus2 > 0.9
assert cached == uncached
print("lesson 10 checks passed")
