"""A network with one hidden layer: the smallest model that is more than linear.

    x (B, ...) --flatten--> (B, in) --hidden: Linear + ReLU--> (B, hidden) --output: Linear--> (B, out)

Without the ReLU between them the two Linear layers would collapse into one (a product of
matrices is a matrix); with it, enough hidden units approximate any continuous function
(Cybenko 1989, Hornik 1991). The MNIST benchmark and the lessons use this one class.
"""

from __future__ import annotations

from torch import Tensor, nn


class MLP(nn.Module):
    """Linear, ReLU, Linear; inputs are flattened after the batch dimension (an image is a vector)."""

    def __init__(self, in_features: int, hidden: int, out_features: int):
        super().__init__()
        self.flatten = nn.Flatten()
        self.hidden = nn.Linear(in_features, hidden)
        self.activation = nn.ReLU()
        self.output = nn.Linear(hidden, out_features)

    def forward(self, x: Tensor) -> Tensor:
        x = self.flatten(x)  # (B, in)
        x = self.activation(self.hidden(x))  # (B, hidden)
        return self.output(x)  # (B, out): logits for a classifier, values for a regression
