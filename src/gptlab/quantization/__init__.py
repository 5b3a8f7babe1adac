"""Quantization: store and run a GPT's weights in 8 or 4 bits, applied from outside.

- `config`: `QuantConfig` and `METHODS`, the methods gptlab knows (torch-free);
- `int8`: per-channel symmetric int8: quantize, dequantize, `Int8Linear` (weight-only or with
  dynamic int8 activations), `Int8Embedding` and the tied head that reads it;
- `int4`: group-wise asymmetric int4, two codes a byte: `Int4Linear`;
- `apply`: `quantize_model` and `quantized_skeleton` (what a saved quantized run loads into).

`gptlab.models` knows nothing of them.
"""

from gptlab.quantization.apply import (
    check_method,
    is_quantized,
    quantize_model,
    quantized_skeleton,
    stored_numbers,
)
from gptlab.quantization.config import METHODS, QuantConfig

__all__ = [
    "METHODS",
    "QuantConfig",
    "check_method",
    "is_quantized",
    "quantize_model",
    "quantized_skeleton",
    "stored_numbers",
]
