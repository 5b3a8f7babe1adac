"""A small convolutional network for 28 x 28 grey images (MNIST).

    image (B, 1, 28, 28)
      --conv 3x3, 16--BN--ReLU--conv 3x3, 16--BN--ReLU--max-pool 2-->  (B, 16, 14, 14)
      --conv 3x3, 32--BN--ReLU--conv 3x3, 32--BN--ReLU--max-pool 2-->  (B, 32, 7, 7)
      --flatten--Linear 128--ReLU--dropout--Linear 10-->               logits (B, 10)

A convolution applies the same small filter at every position, so a stroke is recognised
wherever it is and a layer needs hundreds of weights, not the 784 x hidden of a dense layer.
Two 3x3 convolutions in a row see a 5x5 patch with fewer weights and one more non-linearity
than a single 5x5 (Simonyan & Zisserman 2015). Pooling halves the resolution, so later layers
see larger parts of the digit. Batch normalisation (Ioffe & Szegedy 2015) keeps each channel's
activations centred, which lets a higher learning rate train it in a few epochs; it and dropout
behave differently in training and evaluation, which is why `model.eval()` matters here.
"""

from __future__ import annotations

from torch import Tensor, nn


def conv_stage(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 convolutions with batch norm and ReLU, then 2x2 max-pooling: (B, in, H, W) -> (B, out, H/2, W/2)."""

    def conv_bn_relu(c_in: int) -> list[nn.Module]:
        # no bias: the batch norm right after subtracts the mean, which would cancel it
        return [
            nn.Conv2d(c_in, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        ]

    return nn.Sequential(*conv_bn_relu(in_channels), *conv_bn_relu(out_channels), nn.MaxPool2d(2))


class ConvNet(nn.Module):
    """Convolution stages that halve the image each, then a dense classifier head."""

    def __init__(
        self,
        num_classes: int = 10,
        channels: tuple[int, ...] = (16, 32),
        hidden: int = 128,
        dropout: float = 0.3,
        in_channels: int = 1,
        image_size: int = 28,
    ):
        super().__init__()
        widths = (in_channels, *channels)
        self.features = nn.Sequential(
            *(conv_stage(c_in, c_out) for c_in, c_out in zip(widths, widths[1:]))
        )
        side = image_size // 2 ** len(channels)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels[-1] * side * side, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, images: Tensor) -> Tensor:
        x = self.features(images)  # (B, 32, 7, 7) for two stages on 28 x 28
        return self.classifier(x)  # (B, num_classes)
