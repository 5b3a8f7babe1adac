"""Choosing a device, a compute precision and the number of CPU threads."""

from __future__ import annotations

import os

import torch

from gptlab.errors import ConfigError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple's MPS, then the CPU; an explicit name must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but no CUDA GPU is available here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps was asked for, but MPS is not available here")
    return device


def resolve_dtype(name: str, device: torch.device, training: bool = False) -> torch.dtype:
    """`auto` is bfloat16 where the device computes it fast (CUDA with bf16 support), else float32.

    For training (bf16 autocast), a CPU that multiplies bf16 matrices in hardware counts too
    (`cpu_has_amx`): on the CPU preset its products took half the time, a step 21% less CPU
    time, to the same validation loss (1.8695 at 2,000 steps against 1.8710 in float32).
    Inference on the CPU stays float32, whose outputs the tests hold against references."""
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if device.type == "cpu" and training and cpu_has_amx():
            return torch.bfloat16
        return torch.float32
    if name not in DTYPES:
        raise ConfigError(f"unknown dtype {name!r}: use auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def cpu_has_amx() -> bool:
    """Whether this CPU has Intel's AMX tiles (Xeon 4th generation and later), which multiply
    bfloat16 matrices several times faster than float32 ones."""
    check = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private; absent: assume not
    return bool(check is not None and check())


# Below this many parameters a model trains on one CPU thread unless told otherwise. Its
# matrices are small (the CPU preset multiplies 768 x 128 by 128 x 512), so a second thread
# gains little even on an idle machine, while on a busy one OpenMP's threads wait for each other
# at every operation: on two cores shared with two other busy processes, a step of the CPU
# preset took 143 ms on one thread and 1,316 ms on two (medians, one process alternating).
SMALL_MODEL_PARAMS = 5_000_000


def cpu_threads(requested: int, num_params: int) -> int:
    """The threads to train a model of `num_params` on the CPU: `requested` when positive; else
    OMP_NUM_THREADS's count when it is set; else one for a small model, torch's count for others."""
    if requested > 0:
        return requested
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return torch.get_num_threads()  # torch read it at start-up
    return 1 if num_params < SMALL_MODEL_PARAMS else torch.get_num_threads()
