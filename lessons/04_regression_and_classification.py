# %% [markdown]
# # Lesson 4: regression, classification, and two optimizers
#
# Two problems cover most of supervised learning. **Regression** predicts a number and is
# scored by the mean squared error. **Classification** predicts one of K classes: the model
# gives K scores (*logits*), softmax turns them into probabilities, and the loss is the
# **cross-entropy**, minus the log-probability of the right class. A GPT is a classifier: at
# each position it picks the next token among the vocabulary, scored by exactly this loss.
#
# Then the optimizer: plain SGD takes the same step size in every direction, Adam adapts it per
# parameter, which matters when the directions have very different scales.

# %%
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from lesson_mode import quick_or_full, save_figure
from torch import nn

torch.manual_seed(0)
STEPS = quick_or_full(200, 1000)

# %% [markdown]
# ## Linear regression as an `nn.Module`
#
# Data from a known line with noise: y = 3 x1 - 2 x2 + 0.5 x3 + 1 + noise. The model is one
# `nn.Linear(3, 1)`: three weights and a bias, which training should recover.

# %%
N, FEATURES = 500, 3
TRUE_WEIGHTS = torch.tensor([[3.0], [-2.0], [0.5]])
TRUE_BIAS = 1.0
inputs = torch.randn(N, FEATURES)  # (N, 3)
targets = inputs @ TRUE_WEIGHTS + TRUE_BIAS + 0.1 * torch.randn(N, 1)  # (N, 1)


class LinearRegression(nn.Module):
    """y = x w + b: one linear layer, nothing else."""

    def __init__(self, features: int):
        super().__init__()
        self.linear = nn.Linear(features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)  # (N, features) -> (N, 1)


regression = LinearRegression(FEATURES)
optimizer = torch.optim.SGD(regression.parameters(), lr=0.1)
for _ in range(STEPS):
    loss = F.mse_loss(regression(inputs), targets)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
learned = regression.linear.weight.detach().squeeze()
print(
    f"MSE {loss.item():.4f}; weights {learned.tolist()}, bias {regression.linear.bias.item():.3f}"
)

# Linear least squares also has a closed form; gradient descent should land on it.
design = torch.cat([inputs, torch.ones(N, 1)], dim=1)  # (N, 4): a column of ones for the bias
exact = torch.linalg.lstsq(design, targets).solution.squeeze()  # (4,)
print("least squares:", [round(v, 3) for v in exact.tolist()])

# %% [markdown]
# ## Classification with cross-entropy
#
# Three clouds of 2-D points, one per class. The model is `nn.Linear(2, 3)`: three logits per
# point (this is softmax regression, a linear classifier). `F.cross_entropy` takes the raw
# logits and the class indices; below it is computed by hand to show there is nothing more to it:
# log-softmax, then the negative log-probability of the right class, averaged.

# %%
CLASSES = 3
centres = torch.tensor([[0.0, 2.0], [-2.0, -1.0], [2.0, -1.0]])
labels = torch.arange(CLASSES).repeat_interleave(200)  # (600,): 200 points per class
points = centres[labels] + 0.8 * torch.randn(len(labels), 2)  # (600, 2)

classifier = nn.Linear(2, CLASSES)
logits = classifier(points)  # (600, 3)
by_hand = -torch.log_softmax(logits, dim=-1)[torch.arange(len(labels)), labels].mean()
library = F.cross_entropy(logits, labels)
print(f"cross-entropy by hand {by_hand.item():.6f}, F.cross_entropy {library.item():.6f}")
print(f"an untrained classifier scores about ln(3) = {torch.log(torch.tensor(3.0)).item():.4f}")

optimizer = torch.optim.SGD(classifier.parameters(), lr=0.5)
for _ in range(STEPS):
    loss = F.cross_entropy(classifier(points), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
with torch.no_grad():
    predicted = classifier(points).argmax(dim=-1)
classification_accuracy = (predicted == labels).float().mean().item()
print(f"after training: loss {loss.item():.4f}, accuracy {classification_accuracy:.1%}")

# %%
figure, axes = plt.subplots(figsize=(6, 5), layout="constrained")
colours = ["tab:blue", "tab:orange", "tab:green"]
grid_x, grid_y = torch.meshgrid(
    torch.linspace(-5, 5, 200), torch.linspace(-5, 5, 200), indexing="xy"
)
with torch.no_grad():
    regions = classifier(torch.stack([grid_x, grid_y], dim=-1)).argmax(dim=-1)  # (200, 200)
axes.contourf(grid_x, grid_y, regions, levels=[-0.5, 0.5, 1.5, 2.5], colors=colours, alpha=0.2)
axes.scatter(points[:, 0], points[:, 1], c=[colours[i] for i in labels], s=6)
axes.set(title="a linear classifier: straight boundaries between classes", xlabel="x1", ylabel="x2")
save_figure(figure, "04_classification.png")

# %% [markdown]
# ## SGD vs Adam
#
# Make the regression badly conditioned: multiply one feature by 30. The loss surface becomes
# a long narrow valley. SGD's step must be small enough for the steep direction (or it diverges),
# and then it crawls along the flat one. Adam (Kingma & Ba 2015) divides each parameter's step by
# a running estimate of its gradient's size, so every direction moves at a similar pace.
# Momentum helps SGD too: it keeps velocity along the consistent flat direction.

# %%
scales = torch.tensor([30.0, 1.0, 0.1])
scaled_inputs = inputs * scales  # (N, 3): features of very different sizes


def train(make_optimizer, steps: int) -> list[float]:
    torch.manual_seed(1)  # the same initial weights for every optimizer
    model = LinearRegression(FEATURES)
    optimizer = make_optimizer(model.parameters())
    losses = []
    for _ in range(steps):
        loss = F.mse_loss(model(scaled_inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


# SGD is stable only with lr < 2 / (largest curvature) = 2 / (2 * 30^2): use just under half that.
runs = {
    "SGD, lr 5e-4": train(lambda p: torch.optim.SGD(p, lr=5e-4), STEPS),
    "SGD + momentum 0.9": train(lambda p: torch.optim.SGD(p, lr=5e-4, momentum=0.9), STEPS),
    "Adam, lr 0.1": train(lambda p: torch.optim.Adam(p, lr=0.1), STEPS),
}
for name, losses in runs.items():
    print(f"{name:20} loss after {STEPS} steps: {losses[-1]:.4f}")

figure, axes = plt.subplots(figsize=(7, 4), layout="constrained")
for name, losses in runs.items():
    axes.plot(losses, label=name)
axes.set(xlabel="step", ylabel="mean squared error", yscale="log", title="one badly scaled problem")
axes.legend()
save_figure(figure, "04_sgd_vs_adam.png")

# %% [markdown]
# ## Check

# %%
assert torch.allclose(learned, exact[:3], atol=0.02), (
    "gradient descent missed the least-squares weights"
)
assert torch.allclose(by_hand, library), "cross-entropy is log-softmax and the right class's -log p"
assert classification_accuracy > 0.9
assert runs["Adam, lr 0.1"][-1] < runs["SGD, lr 5e-4"][-1] / 2, (
    "Adam should win on a badly scaled problem"
)
assert runs["SGD + momentum 0.9"][-1] < runs["SGD, lr 5e-4"][-1]
print("lesson 4 checks passed")
