"""The settings of a quantization, and the methods gptlab knows, as data.

Torch-free, like `gptlab.config`: a run's `quantization` section can be read and checked
without building the model. Each method says which devices run it and, until it is built, what
is missing; `gptlab.quantization.apply` maps a built method to the module that replaces a
Linear. A new method (torchao's kernels, say) is a new entry here and there.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from gptlab.errors import ConfigError


@dataclass(frozen=True)
class Method:
    """What one quantization method is, where it runs, and whether gptlab has it yet."""

    summary: str
    devices: tuple[str, ...]  # device types that can run it: "cpu", "cuda", "mps"
    weight_bits: int
    activations: bool = False  # whether it rounds activations too (then no gradient passes)
    min_capability: tuple[int, int] | None = None  # a CUDA compute capability it needs
    missing: str | None = None  # what is not built yet; None when the method works


METHODS = {
    "int8-dynamic": Method(
        "int8 weights per output channel, activations quantized per token at run time",
        ("cpu", "cuda"),
        weight_bits=8,
        activations=True,
    ),
    "int8-static": Method(
        "int8 weights per output channel, activations per tensor with scales fixed by calibration",
        ("cpu", "cuda"),
        weight_bits=8,
        activations=True,
    ),
    "int8-weight": Method(
        "int8 weights per output channel, float activations: weight-only",
        ("cpu", "cuda", "mps"),
        weight_bits=8,
    ),
    "int4-weight": Method(
        "int4 weights in groups along the input, a scale and a zero point per group",
        ("cpu", "cuda", "mps"),
        weight_bits=4,
    ),
    "fp8": Method(
        "float8 (e4m3) weights and activations, scaled per row or per tensor",
        ("cuda",),
        weight_bits=8,
        activations=True,
        min_capability=(8, 9),
    ),
}
DEFAULT_GROUP_SIZE = 128  # int4's group along the input: the usual choice of GPTQ and torchao
OBSERVERS = ("max", "percentile")  # int8-static: what an activation scale is calibrated from
DEFAULT_PERCENTILE = 99.99
# fp8: one scale a row (a weight's output channel, an activation's token) or one a tensor
FP8_SCALINGS = ("row", "tensor")


@dataclass
class QuantConfig:
    """How to quantize a model: the method and the settings of the methods that have some."""

    method: str = "int8-dynamic"
    group_size: int = DEFAULT_GROUP_SIZE  # int4-weight: input features that share a scale
    observer: str = "max"  # int8-static: each input scale from the max or a percentile of |x|
    percentile: float = DEFAULT_PERCENTILE  # int8-static with observer="percentile"
    fp8_scaling: str = "row"  # fp8: weights per output channel and activations per token

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(
                f"unknown quantization method {self.method!r} (known: {', '.join(METHODS)})"
            )
        size = self.group_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 2 or size % 2:
            # Two 4-bit values share a byte, so a group must hold whole bytes.
            raise ConfigError(f"the group size must be an even number of 2 or more, got {size}")
        if self.observer not in OBSERVERS:
            raise ConfigError(f"unknown observer {self.observer!r} (known: {', '.join(OBSERVERS)})")
        if not 50 < self.percentile <= 100:
            raise ConfigError(f"the percentile must be in (50, 100], got {self.percentile}")
        if self.fp8_scaling not in FP8_SCALINGS:
            raise ConfigError(
                f"unknown fp8 scaling {self.fp8_scaling!r} (known: {', '.join(FP8_SCALINGS)})"
            )

    @property
    def spec(self) -> Method:
        return METHODS[self.method]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> QuantConfig:
        """The config of a run's `quantization` section (which also records its source)."""
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})

    def describe(self) -> str:
        settings = {
            "int4-weight": f", groups of {self.group_size}",
            "int8-static": f", {self.observer_name} observer",
            "fp8": f", scaled per {self.fp8_scaling}",
        }
        return f"{self.method} ({self.spec.summary}{settings.get(self.method, '')})"

    @property
    def observer_name(self) -> str:
        return f"{self.percentile:g}th percentile" if self.observer == "percentile" else "max"
