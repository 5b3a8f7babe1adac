# %% [markdown]
# # Lesson 1: tensors
#
# A tensor is an n-dimensional array of numbers with three properties that matter all the time:
# its **shape** (how many numbers along each axis), its **dtype** (what kind of number), and its
# **device** (which memory holds it: the CPU's, or a GPU's). Every model in gptlab, from a
# one-layer network to GPT-2, is tensors going through functions.
#
# Run this file as a script (`uv run python lessons/01_tensors.py`), or open it in Jupyter or
# VS Code, where each `# %%` starts a cell.

# %%
import numpy as np
import torch

from gptlab.device import resolve_device

torch.manual_seed(0)

# %% [markdown]
# ## Making tensors
#
# From Python lists, from NumPy arrays, or with a function that fills a shape.

# %%
from_list = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
zeros = torch.zeros(2, 3)
ones = torch.ones(2, 3)
counting = torch.arange(6)  # 0, 1, ..., 5
evenly = torch.linspace(0.0, 1.0, steps=5)  # 0, 0.25, 0.5, 0.75, 1
normal = torch.randn(2, 3)  # standard normal samples
uniform = torch.rand(2, 3)  # uniform in [0, 1)
identity = torch.eye(3)
sevens = torch.full((2, 2), 7.0)
like = torch.zeros_like(from_list)  # same shape, dtype and device as another tensor

for name, t in [("from_list", from_list), ("counting", counting), ("evenly", evenly)]:
    print(f"{name:10} shape={tuple(t.shape)} dtype={t.dtype} values={t.tolist()}")

# %% [markdown]
# ## dtype: what kind of number
#
# `torch.tensor` infers the dtype: Python floats become `float32`, integers `int64`. Models
# compute in `float32` (or `bfloat16` on GPUs that support it: half the memory, with 8 bits of
# mantissa instead of 23); token ids and class labels are `int64`. Arithmetic between dtypes
# promotes to the wider one.

# %%
print(torch.tensor([1, 2]).dtype, torch.tensor([1.0, 2.0]).dtype)
print("int64 + float32 ->", (torch.tensor([1, 2]) + torch.tensor([0.5, 0.5])).dtype)
third = torch.tensor(1.0) / 3
print(f"1/3 in float32:  {third.item():.10f}")
print(f"1/3 in bfloat16: {third.to(torch.bfloat16).item():.10f}")
print(
    f"1/3 in float64:  {third.to(torch.float64).item():.10f}  (converted from float32: no digits gained)"
)

# %% [markdown]
# ## device: where the numbers live
#
# An operation needs all its tensors on one device. `.to(device)` copies a tensor there (and
# returns the same tensor if it is already there). gptlab's `resolve_device("auto")` picks CUDA,
# then Apple's MPS, then the CPU.

# %%
device = resolve_device("auto")
on_device = from_list.to(device)
print("picked", device, "| tensor is on", on_device.device)
back = on_device.cpu()  # results go back to the CPU to print or save them
print(back.device)

# %% [markdown]
# ## Shape operations
#
# Most bugs in model code are shape bugs, which is why gptlab writes shapes beside the code:
# `# (B, T, C)` means batch, time (position), channels.

# %%
x = torch.arange(24)  # (24,)
grid = x.view(2, 3, 4)  # (2, 3, 4): same 24 numbers read as 2 blocks of 3 rows of 4
print("view(2, 3, 4):", tuple(grid.shape))
print("reshape(4, -1):", tuple(x.reshape(4, -1).shape))  # -1: infer this size
print("permute(2, 0, 1):", tuple(grid.permute(2, 0, 1).shape))  # reorder axes
print("transpose(1, 2):", tuple(grid.transpose(1, 2).shape))  # swap two axes
print("unsqueeze(0):", tuple(grid.unsqueeze(0).shape))  # a new axis of size 1
print("squeeze():", tuple(torch.zeros(1, 3, 1).squeeze().shape))  # drop axes of size 1
print("flatten(1):", tuple(grid.flatten(1).shape))  # merge every axis from 1 on
print("cat dim 0:", tuple(torch.cat([grid, grid], dim=0).shape))  # join along an existing axis
print("stack dim 0:", tuple(torch.stack([grid, grid], dim=0).shape))  # join along a new axis

# %% [markdown]
# The shape operation at the heart of multi-head attention (lesson 8): split the channels of
# each position into heads, then bring the head axis forward so each head is its own matrix.

# %%
B, T, nh, hs = 2, 5, 4, 8
C = nh * hs
hidden = torch.randn(B, T, C)
heads = hidden.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
merged = heads.transpose(1, 2).reshape(B, T, C)  # back to (B, T, C)
print(tuple(heads.shape), "->", tuple(merged.shape), "equal:", torch.equal(merged, hidden))

# %% [markdown]
# ## Broadcasting
#
# Two shapes are compared from the right; each pair of sizes must be equal or one of them 1,
# and a size-1 axis (or a missing one) is stretched to match, without copying memory. It is how
# a bias `(C,)` is added to activations `(B, T, C)`, and how a mask `(T, T)` applies to every
# batch and head of scores `(B, nh, T, T)`.

# %%
activations = torch.randn(2, 5, 3)  # (B, T, C)
bias = torch.tensor([10.0, 20.0, 30.0])  # (C,) -> treated as (1, 1, C)
print("(2, 5, 3) + (3,) ->", tuple((activations + bias).shape))

column = torch.arange(3).view(3, 1)  # (3, 1)
row = torch.arange(4).view(1, 4)  # (1, 4)
table = column * 10 + row  # (3, 4): every pair, an "outer" sum
print(table)

# A classic mistake: a vector of shape (3,) and a column of shape (3, 1) broadcast to (3, 3),
# not to (3,). No error is raised; only the shape tells.
predictions = torch.tensor([1.0, 2.0, 3.0])  # (3,)
targets = torch.tensor([[1.0], [2.0], [3.0]])  # (3, 1)
print("(3,) - (3, 1) ->", tuple((predictions - targets).shape), "  <- probably not what was meant")

# %% [markdown]
# ## Views and copies
#
# A **view** is a new tensor object over the same memory: `view`, `transpose`, `permute`,
# slicing, `expand`. Writing through a view changes the original. A **copy** has its own
# memory: `clone`, `contiguous` (when the layout must change), most arithmetic. `reshape`
# returns a view when it can and a copy when it must.
#
# `transpose` does not move numbers; it changes the *strides* (how many elements to skip per
# step along each axis). A tensor whose strides are not row-major is not *contiguous*, and
# `view` refuses it, because no choice of strides can read it as the new shape.

# %%
base = torch.zeros(2, 3)
view = base.view(6)
view[0] = 1.0  # writes into base's memory
print("base after writing through a view:\n", base)
print("same memory:", view.data_ptr() == base.data_ptr())

copy = base.clone()
copy[0, 0] = 99.0
print("base after writing into a clone:", base[0, 0].item())

transposed = base.t()  # (3, 2): a view with swapped strides
print(
    "strides", base.stride(), "->", transposed.stride(), "contiguous:", transposed.is_contiguous()
)
try:
    transposed.view(6)
except RuntimeError as error:
    print("view of a transposed tensor fails:", str(error).split(".")[0])
flat = transposed.contiguous().view(6)  # contiguous() copies into row-major order
print("after contiguous():", flat.tolist(), "same memory:", flat.data_ptr() == base.data_ptr())

# NumPy arrays and CPU tensors can share memory too.
array = np.zeros(3, dtype=np.float32)
shared = torch.from_numpy(array)
shared[1] = 5.0
print("numpy array after writing the tensor:", array)

# %% [markdown]
# ## Check
#
# Each statement of this lesson, as an assertion: the lesson fails if any stops being true.

# %%
assert torch.tensor([1, 2]).dtype == torch.int64 and torch.tensor([1.0]).dtype == torch.float32
assert (torch.tensor([1]) + torch.tensor([0.5])).dtype == torch.float32  # promotion
assert heads.shape == (B, nh, T, hs) and torch.equal(merged, hidden)  # split and merge heads
assert (activations + bias).shape == (2, 5, 3) and table.shape == (3, 4)
assert table[2, 3] == 23  # row 2 (x10) plus column 3
assert (predictions - targets).shape == (3, 3)
assert base[0, 0] == 1.0 and view.data_ptr() == base.data_ptr()  # a view writes through
assert copy.data_ptr() != base.data_ptr() and base[0, 0] != 99.0  # a copy does not
assert not transposed.is_contiguous() and flat.data_ptr() != base.data_ptr()
assert array[1] == 5.0  # from_numpy shares memory
print("lesson 1 checks passed")
