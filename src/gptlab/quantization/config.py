"""The settings of a quantization, and the methods gptlab knows, as data.

Torch-free, like `gptlab.config`: a run's `quantization` section can be read and checked
without building the model. Each method says which devices run it and, until it is built, what
is missing; `gptlab.quantization.apply` maps a built method to the module that replaces a
Linear. A new method (torchao's kernels, fp8, static int8) is a new entry here and there.
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
    min_capability: tuple[int, int] | None = None  # a CUDA compute capability it needs
    missing: str | None = None  # what is not built yet; None when the method works


METHODS = {
    "int8-dynamic": Method(
        "int8 weights per output channel, activations quantized per token at run time",
        ("cpu", "cuda"),
        weight_bits=8,
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
    "int8-static": Method(
        "int8 weights and activations, the activation scales fixed by calibration",
        ("cpu", "cuda"),
        weight_bits=8,
        missing="calibration on a sample of text (--calibration-data) is not implemented yet",
    ),
    "fp8": Method(
        "float8 (e4m3) weights and activations, scaled per tensor",
        ("cuda",),
        weight_bits=8,
        min_capability=(8, 9),
        missing="float8 kernels (through torchao) are not implemented yet",
    ),
}
DEFAULT_GROUP_SIZE = 128  # int4's group along the input: the usual choice of GPTQ and torchao


@dataclass
class QuantConfig:
    """How to quantize a model: the method, and for int4-weight the group size."""

    method: str = "int8-dynamic"
    group_size: int = DEFAULT_GROUP_SIZE  # int4-weight: input features that share a scale

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(
                f"unknown quantization method {self.method!r} (known: {', '.join(METHODS)})"
            )
        size = self.group_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 2 or size % 2:
            # Two 4-bit values share a byte, so a group must hold whole bytes.
            raise ConfigError(f"the group size must be an even number of 2 or more, got {size}")

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
        group = f", groups of {self.group_size}" if self.method == "int4-weight" else ""
        return f"{self.method} ({self.spec.summary}{group})"
