"""Quantization: store and run a GPT's weights in 8 or 4 bits, applied from outside.

- `config`: `QuantConfig` and `METHODS`, the methods gptlab knows (torch-free);
- `int8`: per-channel symmetric int8: quantize, dequantize, `Int8Linear` (weight-only or with
  dynamic int8 activations), `Int8Embedding` and the tied head that reads it;
- `int4`: group-wise asymmetric int4, two codes a byte: `Int4Linear`;
- `apply`: `quantize_model` and `quantized_skeleton` (what a saved quantized run loads into).

`gptlab.models` knows nothing of them.
"""

from __future__ import annotations

from gptlab.lazy import lazy_names

# Public name -> the module of this package that defines it, imported on first access (PEP 562):
# the command line reads `METHODS` from the torch-free `config` without importing torch.
_LAZY_NAMES = {
    "check_method": ".apply",
    "is_quantized": ".apply",
    "quantize_model": ".apply",
    "quantized_skeleton": ".apply",
    "stored_numbers": ".apply",
    "METHODS": ".config",
    "QuantConfig": ".config",
}

__all__ = sorted(_LAZY_NAMES)


__getattr__, __dir__ = lazy_names(__name__, _LAZY_NAMES)
