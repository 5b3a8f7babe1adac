# %% [markdown]
# # Lesson 11: quantization
#
# A trained GPT stores each weight as a 32- or 16-bit float. **Quantization** stores it as a
# small integer, 8 or 4 bits, with a float **scale** shared by many weights: a quarter or an
# eighth of float32's bytes, for the price of rounding every weight to one of 256 or 16 levels.
#
# This lesson builds the pieces by hand on small tensors and checks each against
# `gptlab.quantization`: a scale and a zero point, one scale per tensor against one per row,
# an int8 matrix product in integers, activation scales fixed by calibration (static) against
# scales computed per token (dynamic), 8-bit floats (fp8), int4 in groups with two values a
# byte, and the bytes a decoded token reads. Then `quantize_model` quantizes a tiny GPT that we first train on a toy
# task, and we compare its logits and its greedy tokens with the float model's. The docs page
# "Quantization" has the commands and measured figures on real models.

# %%
import copy

import torch
from lesson_mode import quick_or_full

from gptlab.config import GPTConfig
from gptlab.generation import GenerationConfig, generate
from gptlab.models.gpt import GPT
from gptlab.quantization import QuantConfig, quantize_model
from gptlab.quantization.fp8 import FP8, dequantize_fp8, quantize_fp8
from gptlab.quantization.int4 import (
    dequantize_groupwise,
    pack_int4,
    quantize_groupwise,
    unpack_int4,
)
from gptlab.quantization.int8 import (
    dequantize,
    int_mm_runs,
    quantize_per_channel,
    quantize_with_scale,
)

torch.manual_seed(0)
torch.set_printoptions(precision=4, sci_mode=False)
STEPS = quick_or_full(150, 600)  # optimizer steps of the tiny GPT's training

# %% [markdown]
# ## A scale by hand: symmetric int8
#
# To store a float w in 8 bits, pick a **scale** s, the float step between two neighbouring
# integer levels, and keep q = round(w / s). w comes back as q · s, moved by at most half a
# step, s / 2. The scale is chosen so that the largest value lands on the last level:
#
#     scale = max|w| / 127          q = round(w / scale)  in [-127, 127]          w ≈ q · scale
#
# The levels are centred on zero (symmetric; -128 is left out so that q and -q are both
# levels), which suits weights: they are spread about zero.

# %%
w = torch.tensor([0.31, -1.20, 0.05, 0.88, -0.47, 2.54, -0.02, -0.93])
scale = w.abs().max() / 127
q = (w / scale).round().clamp(-127, 127).to(torch.int8)
w_back = q.float() * scale
sym_error = (w - w_back).abs()
print(f"scale = {w.abs().max():.2f} / 127 = {scale:.5f}")
print("q:          ", q.tolist())
print("q · scale:  ", w_back)
print(f"largest error {sym_error.max():.5f}, half a step {scale / 2:.5f}")

# %% [markdown]
# ## A zero point: asymmetric
#
# Values that are not centred on zero, such as the outputs of a GELU, would leave the
# negative levels of a symmetric grid almost unused: half the levels, one whole bit, wasted.
# **Asymmetric** quantization spreads all 256 levels over [min, max] and keeps an integer
# **zero point** z, the level that stands for 0.0 (the range is widened to hold 0, so 0.0 is
# stored exactly, as padding and ReLU's zeros need):
#
#     scale = (max - min) / 255      z = round(-min / scale)  in [0, 255]
#     q = clamp(round(w / scale) + z, 0, 255)          w ≈ (q - z) · scale

# %%
a = torch.tensor([-0.15, 0.40, 1.10, 2.05, 2.90, 3.60, 0.00, 1.75])  # mostly positive
low, high = a.min().clamp(max=0), a.max().clamp(min=0)
a_scale = (high - low) / 255
zero = (-low / a_scale).round().clamp(0, 255)
a_q = ((a / a_scale).round() + zero).clamp(0, 255).to(torch.uint8)
a_back = (a_q.float() - zero) * a_scale
asym_error = (a - a_back).abs()

a_sym_scale = a.abs().max() / 127  # the symmetric grid for the same vector
a_sym_error = (a - (a / a_sym_scale).round() * a_sym_scale).abs()
print(f"asymmetric: scale {a_scale:.5f}, zero point {int(zero)}, q = {a_q.tolist()}")
print(f"  0.0 comes back as {a_back[6].item()}, largest error {asym_error.max():.5f}")
print(
    f"symmetric:  scale {a_sym_scale:.5f} (twice as coarse), largest error {a_sym_error.max():.5f}"
)

# %% [markdown]
# ## One scale per tensor, or one per row
#
# A weight matrix's rows are not alike: one output channel can hold weights far larger than
# the others' (an "outlier"). With **one scale for the whole tensor**, that row sets the step
# for every row, and the other rows' small weights are rounded to a handful of levels, or to
# zero. With **one scale per output channel** (row), each row gets a step made for its own
# values. The cost is one float per row: nothing next to the row's int8 values.

# %%
torch.manual_seed(1)
W = torch.randn(4, 16) * 0.02
W[0] *= 50  # row 0 is the outlier row

tensor_scale = W.abs().max() / 127  # one step for all
W_tensor = (W / tensor_scale).round().clamp(-127, 127) * tensor_scale
row_scale = W.abs().amax(dim=1) / 127  # (4,): one step a row
W_q_hand = (W / row_scale[:, None]).round().clamp(-127, 127).to(torch.int8)
W_row = W_q_hand.float() * row_scale[:, None]

error_tensor = (W - W_tensor).abs().mean(dim=1)  # (4,): mean error of each row
error_row = (W - W_row).abs().mean(dim=1)
for i in range(4):
    print(
        f"row {i}: max|w| {W[i].abs().max():.4f}   mean error per tensor {error_tensor[i]:.6f}"
        f"   per row {error_row[i]:.6f}"
    )
zeroed = ((W_tensor == 0) & (W != 0))[1:].sum().item()
print(f"per tensor, {zeroed} of the other rows' {W[1:].numel()} weights became exactly 0")

# %% [markdown]
# gptlab's int8 (`gptlab.quantization.int8.quantize_per_channel`) is this per-row rule, and
# `dequantize` is q · scale row by row:

# %%
W_q, W_scale = quantize_per_channel(W)
same_as_hand = torch.equal(W_q, W_q_hand) and torch.allclose(W_scale, row_scale)
print("gptlab's int8:", W_q.dtype, tuple(W_q.shape), "scales", tuple(W_scale.shape))
print("the same as by hand:", same_as_hand)

# %% [markdown]
# ## An int8 matrix product in integers
#
# Storing int8 saves memory; multiplying in int8 saves arithmetic too. Quantize the
# activations x as well, each **token** (row of x) with its own scale, as it arrives:
# x ≈ x_q · s_x and W ≈ W_q · s_w. Because both grids are symmetric (no zero points), the
# scales come out of the sum:
#
#     y_ij = Σ_k x_ik W_jk ≈ s_x,i · s_w,j · Σ_k x_q,ik W_q,jk
#
# The sum is of int8 × int8 products, accumulated in int32 (a product is at most 127² and
# thousands of them fit easily), then one float multiply per output rescales it. This is
# gptlab's `int8-dynamic` method. Its error has a bound, stated in
# `tests/test_quantization.py`: with x = x_q s_x + e_x (|e_x| <= s_x / 2) and
# W = W_q s_w + e_w (|e_w| <= s_w / 2),
#
#     |error_ij| <= s_x,i / 2 · ||W_j||₁ + s_w,j / 2 · ||x_q,i s_x,i||₁

# %%
torch.manual_seed(2)
x = torch.randn(5, 64)  # 5 tokens
weight = torch.randn(24, 64) * 0.1
x_q, x_s = quantize_per_channel(x)  # a row is a token: (5, 64) int8, (5,)
w_q, w_s = quantize_per_channel(weight)  # (24, 64) int8, (24,)

if int_mm_runs(x_q, w_q):  # torch._int_mm: int8 x int8 -> int32, on the CPU any shape
    accumulated = torch._int_mm(x_q, w_q.t())
    how = "torch._int_mm"
else:
    accumulated = x_q.int() @ w_q.int().t()  # the same exact integer product
    how = "an int32 matmul"
exact_ints = torch.equal(accumulated, x_q.int() @ w_q.int().t())
y_int8 = accumulated.float() * x_s[:, None] * w_s[None, :]  # (5, 24)
y_float = x @ weight.t()
mm_error = (y_int8 - y_float).abs()
mm_bound = x_s[:, None] / 2 * weight.abs().sum(1) + w_s / 2 * dequantize(x_q, x_s).abs().sum(
    1, keepdim=True
)
print(f"{how}: {accumulated.dtype}, largest |sum| {accumulated.abs().max()}")
print(
    f"largest error {mm_error.max():.5f}, its bound there {mm_bound.flatten()[mm_error.argmax()]:.5f}"
)
print(f"relative to the outputs: {mm_error.max() / y_float.abs().max():.2%}")

# %% [markdown]
# ## Static: the activations' scale fixed beforehand
#
# Above, each token got its own scale as it arrived (**dynamic**): a max over the token before
# every product. **Static** quantization fixes one scale per layer beforehand, by
# **calibration**: run the float model on a sample of text and record the largest |x| each
# layer's input reached; the scale is that over 127. No max at run time, and every scale is
# known before the data (integer-only hardware needs that). The price: one step for every
# token, set by the largest one calibration saw, so small tokens get a coarse step, and a token
# beyond the calibrated range is clipped at ±127 steps.

# %%
torch.manual_seed(6)
sample = torch.randn(200, 64)  # the activations calibration saw: 200 tokens
static_scale = sample.abs().max() / 127  # the max observer
fresh = torch.randn(4, 64)  # tokens at run time
fresh[0] *= 0.1  # a quiet token
fresh[3] *= 3  # a token far beyond the calibrated range
static_q = (fresh / static_scale).round().clamp(-127, 127)  # by hand
gptlab_static = torch.equal(quantize_with_scale(fresh, static_scale).float(), static_q)
static_error = (static_q * static_scale - fresh).abs().amax(1)  # per token
dynamic_error = (dequantize(*quantize_per_channel(fresh)) - fresh).abs().amax(1)
clipped = int((fresh.abs() > 127.5 * static_scale).sum())
for t in range(4):
    print(
        f"token {t}: max|x| {fresh[t].abs().max():.3f}  largest error: static "
        f"{static_error[t]:.4f}, dynamic {dynamic_error[t]:.4f}"
    )
print(f"values clipped by the static scale: {clipped}; gptlab's the same: {gptlab_static}")

# %% [markdown]
# The quiet token pays the most: its values are rounded with a step made for tokens 30 times
# larger. The loud one is clipped. `gptlab quantize --method int8-static` calibrates on text
# (`--calibration-data`, or the run's own training split) and stores each layer's scale as
# `input_scale`; `--observer percentile` clips the rarest values on purpose for a finer step.
#
# ## fp8: 8-bit floats
#
# An H100 or H200 multiplies 8-bit **floats** in its tensor cores. `float8_e4m3fn` has 4
# exponent bits and 3 mantissa bits: its levels are spaced like a float's, dense near zero and
# sparse near its largest value, 448. So rounding moves a value by at most 1/16 of itself
# (relative), where int8 moves every value by up to half of one fixed step (absolute). Scaled
# so that a row's largest value maps to 448, as int8 maps it to 127:

# %%
levels = torch.tensor([0.01, 0.1, 1.0, 3.3, 300.0]).to(FP8).float()
print("0.01, 0.1, 1, 3.3, 300 in e4m3:", [round(v, 5) for v in levels.tolist()])
torch.manual_seed(7)
W2 = torch.randn(16, 256) * 0.02  # a weight matrix of ordinary rows
w8, s8 = quantize_fp8(W2, per_row=True)  # (16, 256) fp8, (16, 1) float32
fp8_error = (dequantize_fp8(w8, s8) - W2).abs()
int8_row_error = (dequantize(*quantize_per_channel(W2)) - W2).abs()
row_max = W2.abs().amax(1, keepdim=True)
bands = {"tiny (< max/32)": W2.abs() < row_max / 32, "large (> max/4)": W2.abs() > row_max / 4}
for band, where in bands.items():
    print(
        f"mean error of the {band} weights: fp8 {fp8_error[where].mean():.6f}, "
        f"int8 {int8_row_error[where].mean():.6f}"
    )

# %% [markdown]
# Tiny weights keep more of their precision in fp8, large ones less: with 3 mantissa bits
# a value near the top of a row is rounded to one of 8 levels per power of two, where int8
# has 32 levels between max/4 and max. gptlab's
# `fp8` method quantizes weights this way once and activations per token at run time, and
# multiplies through `torch._scaled_mm` on GPUs of compute capability 8.9 or more; elsewhere
# it is refused (the tests run its reference product, the dequantized operands multiplied).
#
# ## int4 in groups
#
# Four bits give 16 levels. One scale per row of 768 weights would be too coarse: one large
# weight anywhere in the row makes the step large for all of them. So int4 cuts each row into
# **groups** of `group_size` inputs (32 or 128 usually), each with its own scale and zero point
# (asymmetric: a group of 32 is rarely centred on zero). A group's step is its own range / 15,
# so an outlier only coarsens the 31 weights of its group.

# %%
torch.manual_seed(3)
row = torch.randn(1, 128) * 0.02
row[0, 5] = 0.5  # one large weight, in the first group of 32
for size in (128, 32):
    codes, g_scale, g_zero = quantize_groupwise(row, size)
    back = dequantize_groupwise(codes, g_scale, g_zero)
    err = (row - back).abs().reshape(-1, size).mean(1)  # mean error of each group
    print(f"groups of {size:>3}: step of each group      ", [f"{v:.4f}" for v in g_scale[0]])
    print("               mean error of each group", [f"{v:.4f}" for v in err])

# %% [markdown]
# Two 4-bit codes share one byte: the even input feature in the low nibble, the odd one in the
# high nibble, so code 3 and code 12 become 3 + 12 · 16 = 195. `pack_int4` and `unpack_int4`
# do that for a whole matrix.

# %%
pair = torch.tensor([[3, 12]], dtype=torch.uint8)
byte = pack_int4(pair)
print(f"codes {pair.tolist()} -> byte {byte.item()} = 0b{byte.item():08b}")
torch.manual_seed(4)
M = torch.randn(64, 256) * 0.02
codes, g_scale, g_zero = quantize_groupwise(M, 32)
packed = pack_int4(codes)
round_trip = torch.equal(unpack_int4(packed), codes)
print(f"codes {tuple(codes.shape)} -> bytes {tuple(packed.shape)} {packed.dtype}")
M4 = dequantize_groupwise(codes, g_scale, g_zero)
M4_group_error = (M - M4).abs().reshape(64, 8, 32)  # (out, groups, group)
within_half_step = bool((M4_group_error <= g_scale[..., None] / 2 * (1 + 1e-5)).all())

M8 = dequantize(*quantize_per_channel(M))
int4_error, int8_error = (M - M4).abs().mean().item(), (M - M8).abs().mean().item()
print(f"mean error: int8 per row {int8_error:.6f}, int4 in groups of 32 {int4_error:.6f}")
print(f"int4's error is {int4_error / int8_error:.0f}x int8's, for half the bytes")

# %% [markdown]
# ## Bytes per decoded token
#
# Decoding one sequence makes one token per forward pass, and that pass multiplies one row of
# activations by **every** weight matrix: each weight is read from memory once per token and
# used in one multiply-add. The reading, not the arithmetic, sets the speed, so fewer bytes per
# weight decode faster even when the arithmetic stays in floats (with a kernel that widens the
# weights in registers; see the docs page on why gptlab's readable CPU forward does not).
#
# We count the bytes from GPT-2 124M's shapes (`GPTConfig.from_preset("gpt2")`: 12 blocks, width
# C = 768, 50,257 tokens, 1,024 positions). A block holds four matrices: the fused
# query-key-value projection C x 3C, the attention output C x C, and the MLP's C x 4C and
# 4C x C, 12 C² numbers; their biases (9C) and two LayerNorms (4C). A token reads every matrix,
# bias and LayerNorm, the tied table once (as the output layer: the embedding lookup reads one
# row of it) and one row of the position table. Quantized, a matrix also reads its scales
# (float32): one per row for int8, a scale and a uint8 zero point per group of 128 for int4.
# gptlab keeps the tied table int8 under int4 (it is both the input and the output).


# %%
def shapes(config: GPTConfig) -> dict:
    """The numbers of a GPT-2-shaped model, by kind, from its config alone."""
    C, L = config.n_embd, config.n_layer
    return {
        "matrices": L * 12 * C * C,
        "matrix rows": L * (3 * C + C + 4 * C + C),  # one int8 scale each
        "small": L * (9 * C + 4 * C) + 2 * C,  # biases and LayerNorms, the final one too
        "table": config.vocab_size * C,
        "positions": config.context_length * C,
    }


gpt2 = shapes(GPTConfig.from_preset("gpt2"))
gpt2_total = sum(v for k, v in gpt2.items() if k != "matrix rows")
print(f"GPT-2 124M: {gpt2_total:,} numbers")
for kind, count in gpt2.items():
    print(f"  {kind:>11}: {count:>11,}")
C = GPTConfig.from_preset("gpt2").n_embd


def bytes_per_token(fmt: str) -> float:
    """The weight bytes one decoded token reads in a format (the float formats: everything in
    that dtype; int8 and int4: the matrices quantized, the tied table int8, the rest float32)."""
    read_as_is = gpt2["small"] + C  # and one row of the position table
    if fmt in ("float32", "bf16"):
        return (gpt2["matrices"] + gpt2["table"] + read_as_is) * (4 if fmt == "float32" else 2)
    table = gpt2["table"] + gpt2["table"] // C * 4  # int8 values and a float32 scale per token
    if fmt == "int8":
        matrices = gpt2["matrices"] + gpt2["matrix rows"] * 4
    else:  # int4: half a byte a value, a float32 scale and a uint8 zero point per group of 128
        matrices = gpt2["matrices"] // 2 + gpt2["matrices"] // 128 * (4 + 1)
    return matrices + table + read_as_is * 4


per_token = {fmt: bytes_per_token(fmt) for fmt in ("float32", "bf16", "int8", "int4")}
for fmt, size in per_token.items():
    print(f"{fmt:>7}: {size / 1e6:6.1f} MB a token, {per_token['float32'] / size:.1f}x fewer")

# %% [markdown]
# int4 saves less than 8x: the table (38.6M numbers, 31% of the model) stays int8, and the
# groups' scales and zero points add 5 bytes per 128 weights. At 3 TB/s
# of GPU memory bandwidth, 124 MB a token is at best ~24,000 tokens a second at batch 1.
#
# ## A quantized GPT
#
# `gptlab.quantization.quantize_model` quantizes a built GPT in place: every `nn.Linear`
# becomes the method's quantized module, and the tied token table and output layer become one
# int8 table that both read. The parameter names stay the float model's. Our tiny GPT first
# learns lesson 10's toy language for a few seconds: a marker token gives the step (16 means
# +1, 17 means +2), then numbers count up by it modulo 16.

# %%
NUMBERS, T = 16, 12


def sequences(batch: int):
    step = torch.randint(1, 3, (batch, 1))  # +1 or +2
    start = torch.randint(0, NUMBERS, (batch, 1))
    numbers = (start + step * torch.arange(T - 1)) % NUMBERS  # (batch, T - 1)
    return torch.cat([15 + step, numbers], dim=1)  # (batch, T)


config = GPTConfig(vocab_size=18, context_length=32, n_layer=2, n_head=2, n_embd=64, dropout=0.0)
torch.manual_seed(5)
model = GPT(config)
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
for _ in range(STEPS):
    rows = sequences(32)
    _, loss = model(rows[:, :-1], rows[:, 1:])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
model.eval()
print(f"trained {STEPS} steps, last loss {loss.item():.3f}")

test = sequences(64)
prompts = test[:, :3].tolist()  # the marker and two numbers
greedy = GenerationConfig(strategy="greedy", max_new_tokens=8)
with torch.no_grad():
    reference = model(test, all_logits=True)[0]
float_tokens = generate(model, prompts, greedy)

results = {}
calibration = [sequences(32)[:, :-1] for _ in range(4)]  # int8-static's sample of text
for method in ("int8-dynamic", "int8-static", "int8-weight", "int4-weight"):
    settings = QuantConfig(method, group_size=32)
    quantized = quantize_model(copy.deepcopy(model), settings, calibration)
    with torch.no_grad():
        logits = quantized(test, all_logits=True)[0]
    tokens = generate(quantized, prompts, greedy)
    change = ((logits - reference).abs().max() / reference.abs().max()).item()
    same = sum(a == b for x, y in zip(tokens, float_tokens) for a, b in zip(x, y))
    results[method] = (change, same / sum(map(len, float_tokens)), quantized)
    print(
        f"{method:>12}: largest logit change {change:.2%} of the largest logit, "
        f"greedy tokens the same {results[method][1]:.1%}"
    )

# %% [markdown]
# The state dict keeps the float model's names, with int8 weights beside their scales, and the
# token table once (`wte`), read by the output layer too; int4 stores bytes holding two codes,
# and a scale and a zero point per group. The LayerNorms and the position table stay float.

# %%
state8 = results["int8-dynamic"][2].state_dict()
state4 = results["int4-weight"][2].state_dict()
for name in ("h.0.attn.c_attn.weight", "h.0.attn.c_attn.scale", "wte.weight", "wte.scale"):
    print(f"int8 {name:<24} {str(state8[name].dtype):<14} {tuple(state8[name].shape)}")
for name in ("h.0.mlp.c_fc.weight", "h.0.mlp.c_fc.scale", "h.0.mlp.c_fc.zero", "h.0.ln_1.weight"):
    print(f"int4 {name:<24} {str(state4[name].dtype):<14} {tuple(state4[name].shape)}")
q8 = results["int8-dynamic"][2]
print(
    "lm_head reads wte's table:",
    q8.lm_head.weight is q8.wte.weight,
    "| lm_head in the state dict:",
    any(n.startswith("lm_head") for n in state8),
)

# %% [markdown]
# ## Check

# %%
assert (sym_error <= scale / 2 + 1e-7).all(), "rounding moves a value by at most half a step"
assert (asym_error <= a_scale / 2 + 1e-7).all() and a_back[6] == 0.0
assert a_scale < a_sym_scale / 1.9, "all-levels asymmetric has about half the step here"
assert (error_row[1:] < error_tensor[1:] / 10).all(), "per row saves the small rows"
assert torch.allclose(error_row[0], error_tensor[0]), "the outlier row has the same step both ways"
assert zeroed > 0 and same_as_hand
assert exact_ints and accumulated.dtype == torch.int32
assert (mm_error <= mm_bound * (1 + 1e-5) + 1e-5).all() and mm_error.max() > 0
assert gptlab_static and clipped > 0
assert static_error[0] > 3 * dynamic_error[0], "the quiet token pays for the shared step"
assert (dynamic_error <= quantize_per_channel(fresh)[1] / 2 * (1 + 1e-5)).all()
tiny, large = bands.values()
assert fp8_error[tiny].mean() < int8_row_error[tiny].mean() / 2, "fp8: finer near zero"
assert fp8_error[large].mean() > int8_row_error[large].mean() * 2, "int8: finer near the max"
assert (fp8_error <= torch.maximum(W2.abs() / 16, s8 * 2**-10) * (1 + 1e-5)).all()
assert byte.item() == 195 and round_trip and packed.shape == (64, 128)
assert within_half_step, "int4 rounds within half a step of its group"
assert int8_error < int4_error < 40 * int8_error
assert gpt2_total == 124_439_808, "GPT-2 124M's parameter count, from the shapes"
assert sum(v for k, v in shapes(config).items() if k != "matrix rows") == model.num_params()
assert per_token["float32"] == 4 * (gpt2_total - gpt2["positions"] + C)
assert per_token["bf16"] * 2 == per_token["float32"]
assert 3.8 < per_token["float32"] / per_token["int8"] < 4
assert 1.4 < per_token["int8"] / per_token["int4"] < 2, "less than 2x: the table stays int8"
assert results["int8-dynamic"][0] < 0.05 and results["int8-weight"][0] < 0.02
assert results["int4-weight"][0] < 0.1
assert results["int8-static"][0] < 0.05 and results["int8-static"][1] > 0.9
assert results["int8-dynamic"][1] > 0.9 and results["int8-weight"][1] > 0.9
assert results["int4-weight"][1] > 0.75
assert (
    state8["h.0.attn.c_attn.weight"].dtype == torch.int8
    and state8["wte.weight"].dtype == torch.int8
)
assert state8["h.0.attn.c_attn.scale"].shape == (3 * config.n_embd,)
assert state4["h.0.mlp.c_fc.weight"].dtype == torch.uint8
assert state4["h.0.mlp.c_fc.weight"].shape == (4 * config.n_embd, config.n_embd // 2)
assert q8.lm_head.weight is q8.wte.weight
print("lesson 11 checks passed")
