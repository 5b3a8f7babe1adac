# %% [markdown]
# # Lesson 3: a network with one hidden layer
#
# A straight line cannot follow a wave. Put a layer of ReLU units between input and output and
# the network can: each unit is a hinge, max(0, w x + b), that bends at x = -b / w, and the
# output adds the hinges up into a curve made of straight pieces. With enough units it
# approximates any continuous function on an interval.
#
# First everything by hand: the forward pass, the gradients by the chain rule, the update.
# Then the same network as an `nn.Module` (gptlab's `MLP`) trained by `torch.optim.SGD`, which
# must follow exactly the same path.

# %%
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from lesson_mode import quick_or_full, save_figure

from gptlab.models.mlp import MLP

torch.manual_seed(0)
STEPS = quick_or_full(300, 1500)
HIDDEN = 32
LEARNING_RATE = 0.1

# %% [markdown]
# ## The problem: fit y = sin(2x) from noisy samples

# %%
N = 256
x = torch.linspace(-2.0, 2.0, N).unsqueeze(1)  # (N, 1): one input feature
y = torch.sin(2 * x) + 0.05 * torch.randn(N, 1)  # (N, 1)

# %% [markdown]
# ## By hand: parameters, forward, backward
#
# The parameters are plain tensors. PyTorch's default for a Linear layer draws weights and
# biases uniformly in +-1/sqrt(fan_in). With one input that is +-1 for both, so the hinges,
# at x = -b / w, land at random places, many of them inside the range of x where they can
# be put to use.

# %%


def uniform(*shape, bound):
    return (torch.rand(*shape) * 2 - 1) * bound


W1 = uniform(1, HIDDEN, bound=1.0)  # (1, H)
b1 = uniform(HIDDEN, bound=1.0)  # (H,)
W2 = uniform(HIDDEN, 1, bound=HIDDEN**-0.5)  # (H, 1)
b2 = uniform(1, bound=HIDDEN**-0.5)  # (1,)
initial = [p.clone() for p in (W1, b1, W2, b2)]


def forward(x, W1, b1, W2, b2):
    """The prediction and what the backward pass needs to remember."""
    pre = x @ W1 + b1  # (N, H): where each input falls on each hinge
    hidden = pre.clamp(min=0)  # (N, H): ReLU
    prediction = hidden @ W2 + b2  # (N, 1)
    return prediction, pre, hidden


def gradients_by_hand(x, y, W1, b1, W2, b2):
    """Mean squared error and its gradient for each parameter, by the chain rule, layer by layer
    from the loss back to the input."""
    prediction, pre, hidden = forward(x, W1, b1, W2, b2)
    loss = ((prediction - y) ** 2).mean()
    d_prediction = 2 * (prediction - y) / len(x)  # (N, 1): d loss / d prediction
    d_W2 = hidden.T @ d_prediction  # (H, 1)
    d_b2 = d_prediction.sum(0)  # (1,)
    d_hidden = d_prediction @ W2.T  # (N, H)
    d_pre = d_hidden * (pre > 0)  # (N, H): ReLU passes the gradient only where it was open
    d_W1 = x.T @ d_pre  # (1, H)
    d_b1 = d_pre.sum(0)  # (H,)
    return loss, (d_W1, d_b1, d_W2, d_b2)


# %% [markdown]
# Before trusting the hand-written gradients, compare them with autograd's (lesson 2).

# %%
leaves = [p.clone().requires_grad_() for p in (W1, b1, W2, b2)]
autograd_loss = ((forward(x, *leaves)[0] - y) ** 2).mean()
autograd_loss.backward()
_, hand = gradients_by_hand(x, y, W1, b1, W2, b2)
gradients_agree = all(torch.allclose(g, p.grad, atol=1e-6) for g, p in zip(hand, leaves))
print("hand-written gradients equal autograd's:", gradients_agree)

# %% [markdown]
# ## Training by hand: gradient descent
#
# Each step moves every parameter a little against its gradient: p <- p - lr * dp.

# %%
hand_losses = []
for _ in range(STEPS):
    loss, grads = gradients_by_hand(x, y, W1, b1, W2, b2)
    for parameter, gradient in zip((W1, b1, W2, b2), grads):
        parameter -= LEARNING_RATE * gradient  # in place: these tensors need no graph
    hand_losses.append(loss.item())
print(f"by hand: loss {hand_losses[0]:.4f} -> {hand_losses[-1]:.4f} after {STEPS} steps")

# %% [markdown]
# ## The same network as an `nn.Module`
#
# `gptlab.models.mlp.MLP` holds the same four tensors as two `nn.Linear` layers (`hidden`,
# `output`) with a ReLU between them. `nn.Linear` stores its weight as (out, in) and computes
# x @ weight.T + bias, so our (in, out) matrices go in transposed. An `nn.Module` registers its
# parameters, so `model.parameters()` finds them for the optimizer, `.to(device)` moves them
# all, and `state_dict()` saves them.

# %%
model = MLP(in_features=1, hidden=HIDDEN, out_features=1)
print(model)
with torch.no_grad():
    model.hidden.weight.copy_(initial[0].T)
    model.hidden.bias.copy_(initial[1])
    model.output.weight.copy_(initial[2].T)
    model.output.bias.copy_(initial[3])
print("parameters:", sum(p.numel() for p in model.parameters()))

# %% [markdown]
# `loss.backward()` replaces our backward pass and `optimizer.step()` our update loop.

# %%
optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
module_losses = []
for _ in range(STEPS):
    loss = F.mse_loss(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    module_losses.append(loss.item())
print(f"nn.Module: loss {module_losses[0]:.4f} -> {module_losses[-1]:.4f}")

# A straight line, for comparison: the best linear fit by least squares.
design = torch.cat([x, torch.ones_like(x)], dim=1)  # (N, 2)
line = design @ torch.linalg.lstsq(design, y).solution  # (N, 1)
line_loss = F.mse_loss(line, y).item()
print(f"best straight line: loss {line_loss:.4f}")

# %%
figure, (fit_axes, loss_axes) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
fit_axes.scatter(x, y, s=6, color="grey", label="samples")
fit_axes.plot(x, line, label="best straight line")
with torch.no_grad():
    fit_axes.plot(x, model(x), linewidth=2, label=f"{HIDDEN} ReLU units")
    kinks = (-model.hidden.bias / model.hidden.weight[:, 0]).clamp(-2, 2)
fit_axes.vlines(kinks, -1.4, -1.2, color="black", linewidth=1, label="hinges")
fit_axes.set(xlabel="x", ylabel="y", title="one hidden layer fits a curve from straight pieces")
fit_axes.legend(fontsize=8, loc="upper left")
loss_axes.plot(hand_losses, label="by hand", linewidth=3, alpha=0.5)
loss_axes.plot(module_losses, "--", label="nn.Module + optim.SGD")
loss_axes.set(xlabel="step", ylabel="mean squared error", yscale="log", title="training loss")
loss_axes.legend()
save_figure(figure, "03_hidden_layer.png")

# %% [markdown]
# ## Check

# %%
assert gradients_agree
# The two trainings start from the same numbers and apply the same updates: the same losses,
# up to float32 rounding of the different order of operations.
assert torch.allclose(torch.tensor(hand_losses), torch.tensor(module_losses), rtol=1e-3, atol=1e-6)
assert torch.allclose(model.hidden.weight.detach().T, W1, atol=1e-4)
assert module_losses[-1] < module_losses[0] / 2, "training did not reduce the loss"
if STEPS >= 1500:
    assert module_losses[-1] < line_loss / 10, "the hidden layer should beat a line by far"
print("lesson 3 checks passed")
