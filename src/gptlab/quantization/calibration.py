"""Calibration: the activation scales of static int8, fixed beforehand from a sample of text.

Dynamic int8 measures each token's max|x| as it arrives; static int8 must choose one scale per
layer before seeing the data it will run on. So the float model reads a few batches of
representative text first, and an *observer* at the input of every Linear to be quantized
remembers what it saw (the post-training static quantization of Jacob et al. 2018, section
3, and of `torch.ao.quantization`'s prepare / calibrate / convert):

- `max`: the largest |x| over every batch. Nothing calibration saw is clipped; one outlier
  (large transformers have a few activation channels many times the others, Dettmers et al.
  2022, "LLM.int8()") then sets the step for every other value. This is gptlab's default: an
  outlier channel of a transformer carries meaning, and clipping it changes what the next
  layer computes, where the coarser step spreads small noise over every value
  (docs/quantization.md has the comparison measured on a small model, where it is a wash).
- `percentile`: the p-th percentile of |x| (default 99.99), averaged over batches. The
  rarest values are clipped to ±127 steps; the rest get a finer step.

The scale is the observed value over 127, per tensor: one number a layer, stored in the run as
`<layer>.input_scale` and loaded as it is (no calibration at load time).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from gptlab.errors import ConfigError
from gptlab.quantization.int8 import QMAX

PERCENTILE_SAMPLE = 1 << 20  # |x| values a percentile is taken from, at most (a random sample)
DEFAULT_BATCHES = 8  # 8 x 4 windows of 256 tokens: 8,192 tokens, a few seconds for GPT-2
BATCH_SIZE = 4  # windows a calibration batch holds
WINDOW = 256  # tokens a window holds at most (the context, if shorter)


class AbsMaxObserver:
    """The largest |x| seen."""

    def __init__(self):
        self.value = 0.0

    def observe(self, x: Tensor) -> None:
        self.value = max(self.value, x.detach().abs().max().item())

    def result(self) -> float:
        return self.value


class PercentileObserver:
    """The mean over batches of each batch's p-th percentile of |x|."""

    def __init__(self, percentile: float):
        self.quantile = percentile / 100
        self.values: list[float] = []

    def observe(self, x: Tensor) -> None:
        values = x.detach().abs().flatten().float()
        if values.numel() > PERCENTILE_SAMPLE:  # torch.quantile refuses very large inputs
            generator = torch.Generator(device=values.device).manual_seed(len(self.values))
            pick = torch.randint(
                values.numel(), (PERCENTILE_SAMPLE,), generator=generator, device=values.device
            )
            values = values[pick]
        self.values.append(torch.quantile(values, self.quantile).item())

    def result(self) -> float:
        return sum(self.values) / max(len(self.values), 1)


def make_observer(observer: str, percentile: float):
    return AbsMaxObserver() if observer == "max" else PercentileObserver(percentile)


def observe_inputs(
    model: nn.Module, batches: Iterable[Tensor], names: list[str], observer: str, percentile: float
) -> dict[str, float]:
    """Run `model` on each batch of token ids (B, T); return, for each module in `names`, what
    its observer made of the inputs it saw."""
    observers = {name: make_observer(observer, percentile) for name in names}
    hooks = [
        model.get_submodule(name).register_forward_pre_hook(
            lambda module, args, seen=observers[name]: seen.observe(args[0])
        )
        for name in names
    ]
    count = 0
    try:
        with torch.no_grad():
            for batch in batches:
                model(batch)
                count += 1
    finally:
        for hook in hooks:
            hook.remove()
    if not count:
        raise ConfigError("calibration needs at least one batch of text")
    return {name: seen.result() for name, seen in observers.items()}


def input_scales(observed: dict[str, float]) -> dict[str, float]:
    """Observed |x| -> the int8 scale that maps it to 127 (an all-zero input: any scale)."""
    return {name: max(value, 1e-12) / QMAX for name, value in observed.items()}


def calibration_batches(
    tokens, context_length: int, num_batches: int = DEFAULT_BATCHES, device="cpu"
) -> list[Tensor]:
    """`num_batches` batches (BATCH_SIZE, T) of windows spread evenly over a token array, T the
    context up to WINDOW: the same sample at every call, so calibrating twice gives the same
    scales."""
    from gptlab.data.text import TokenData

    window = min(WINDOW, context_length)
    data = TokenData(tokens, val_fraction=0.0)
    windows = data.eval_batches("train", BATCH_SIZE, window, num_batches, device)
    return [x for x, _ in windows]
