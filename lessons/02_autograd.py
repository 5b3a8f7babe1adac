# %% [markdown]
# # Lesson 2: autograd
#
# Training a network means following the gradient of a loss with respect to every parameter.
# Nobody writes those derivatives by hand for GPT-2's 124 million parameters: PyTorch records
# the operations that produced a result (the *graph*) and walks it backwards, applying the chain
# rule at each step. That is `backward()`.

# %%
import torch

torch.manual_seed(0)

# %% [markdown]
# ## The graph
#
# A tensor created with `requires_grad=True` is a *leaf* whose gradient we want. Every result
# computed from it remembers the function that made it (`grad_fn`), and that function remembers
# its inputs: following `next_functions` from the loss walks the graph back to the leaves.

# %%
x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
w = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
y = (w * x).sum()  # a dot product
z = y**2

print("z =", z.item(), "made by", z.grad_fn.name())


def walk(function, depth=0):
    """Print the graph that produced a tensor, one function a line."""
    if function is None:
        return
    print("  " * depth + function.name())
    for parent, _ in function.next_functions:
        walk(parent, depth + 1)


walk(z.grad_fn)

# %% [markdown]
# ## backward
#
# `z.backward()` fills `.grad` of every leaf with dz/dleaf. Here z = (w . x)^2, so
# dz/dx = 2 (w . x) w and dz/dw = 2 (w . x) x: autograd must agree.

# %%
z.backward()
dot = (w * x).sum().detach()
print("x.grad =", x.grad.tolist(), " by hand:", (2 * dot * w).tolist())
print("w.grad =", w.grad.tolist(), " by hand:", (2 * dot * x).tolist())
by_hand_ok = torch.allclose(x.grad, 2 * dot * w.detach()) and torch.allclose(
    w.grad, 2 * dot * x.detach()
)

# %% [markdown]
# Gradients **accumulate**: a second `backward` adds to `.grad` instead of replacing it. That is
# what lets a trainer sum the gradients of several micro-batches before one optimizer step
# (gptlab's `grad_accum`), and why every training loop zeroes gradients after each step.

# %%
first = x.grad.clone()
((w * x).sum() ** 2).backward()  # the same computation again
print("after a second backward:", x.grad.tolist(), "= 2 x", first.tolist())
accumulated = torch.allclose(x.grad, 2 * first)
x.grad = None  # what optimizer.zero_grad(set_to_none=True) does
w.grad = None

# %% [markdown]
# ## Checking gradients with finite differences
#
# The derivative is a limit: f'(a) ~ (f(a + h) - f(a - h)) / 2h for a small h (the central
# difference, whose error shrinks as h^2). Nudging each input in turn gives every partial
# derivative, slowly but independently of autograd: the standard test of a hand-written
# backward. In float32 the subtraction loses most digits, so checks use float64.

# %%


def f(inputs: torch.Tensor) -> torch.Tensor:
    """Any differentiable function to a scalar: a small two-layer computation with a softmax."""
    hidden = torch.tanh(inputs @ weights_1)  # (3,) @ (3, 4) -> (4,)
    return torch.softmax(hidden @ weights_2, dim=-1)[0] * inputs.pow(2).sum()


weights_1 = torch.randn(3, 4, dtype=torch.float64)
weights_2 = torch.randn(4, 2, dtype=torch.float64)
point = torch.randn(3, dtype=torch.float64, requires_grad=True)

f(point).backward()
autograd_gradient = point.grad.clone()

h = 1e-6
numerical_gradient = torch.zeros(3, dtype=torch.float64)
with torch.no_grad():
    for i in range(3):
        step = torch.zeros(3, dtype=torch.float64)
        step[i] = h
        numerical_gradient[i] = (f(point + step) - f(point - step)) / (2 * h)

print("autograd:         ", autograd_gradient.tolist())
print("finite difference:", numerical_gradient.tolist())
print("largest difference:", (autograd_gradient - numerical_gradient).abs().max().item())

# PyTorch packages the same test as gradcheck (it perturbs every input and compares).
gradcheck_ok = torch.autograd.gradcheck(f, (point,))
print("torch.autograd.gradcheck:", gradcheck_ok)

# %% [markdown]
# ## no_grad: computing without a graph
#
# Recording the graph costs memory (every intermediate is kept for the backward pass). For
# evaluation and generation we need no gradients, so we turn recording off with
# `torch.no_grad()` (or `torch.inference_mode()`, slightly faster and stricter). Updating
# parameters by hand also happens under `no_grad`: the update itself must not become part of
# the graph.

# %%
with torch.no_grad():
    evaluated = f(point)
print(
    "requires_grad inside no_grad:", evaluated.requires_grad, "| outside:", f(point).requires_grad
)

# %% [markdown]
# ## detach: cutting the graph
#
# `t.detach()` is the same values as `t` with no history: gradients stop there. It is how a
# value is used as a constant inside a differentiable computation (a target, a moving average,
# the straight-through trick), and how a tensor is taken out to log or plot.

# %%
a = torch.tensor(3.0, requires_grad=True)
(a * a).backward()
print("d(a*a)/da =", a.grad.item(), "(= 2a)")
a.grad = None
(a * a.detach()).backward()  # the second factor is now a constant 3
print("d(a*a.detach())/da =", a.grad.item(), "(= a: only one factor depends on a)")
detached_grad = a.grad.item()

# %% [markdown]
# ## Check

# %%
assert by_hand_ok, "autograd disagrees with the derivative worked out by hand"
assert accumulated, "gradients did not accumulate across two backward calls"
assert torch.allclose(autograd_gradient, numerical_gradient, atol=1e-6), (
    "finite differences disagree"
)
assert gradcheck_ok
assert not evaluated.requires_grad and f(point).requires_grad
assert detached_grad == 3.0
print("lesson 2 checks passed")
