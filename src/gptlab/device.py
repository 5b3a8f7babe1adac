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


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """`auto` is bfloat16 where the device computes it fast (CUDA with bf16 support), else float32.

    `fast` also takes bfloat16 on a CPU that multiplies bf16 matrices in hardware (`cpu_has_amx`):
    training the CPU preset under bf16 autocast there, a step took 38 ms of CPU against 62 ms in
    float32 (its matrix products 5-6x faster), to a better validation loss (1.8695 at 2,000 steps
    against 1.8710). It is the CPU preset's setting; `auto` keeps every other CPU job in float32,
    where its figures were measured."""
    if name in ("auto", "fast"):
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if name == "fast" and device.type == "cpu" and cpu_has_amx():
            return torch.bfloat16
        return torch.float32
    if name not in DTYPES:
        raise ConfigError(f"unknown dtype {name!r}: use auto, fast, {', '.join(DTYPES)}")
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


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep the memory a training step frees, instead of handing it back to
    the OS and faulting it in again at the next step; True where that could be set (Linux, glibc).

    torch's CPU tensors come straight from malloc. A step frees its activations all at once,
    glibc gives the top of the heap back to the OS, and the next step touches every page anew:
    5 ms of system time a step for the CPU preset (1000 steps: 5.8 s of system time, 0.5 s with
    this; 61.5 s against 56.0 s start to finish). The cost is memory the process keeps (up to
    the 1 GiB trim threshold) after its peak."""
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
    # Fixed thresholds also stop glibc's own adjusting of them; 32 MiB is its largest mmap one.
    return bool(mallopt(M_TRIM_THRESHOLD, 1 << 30) and mallopt(M_MMAP_THRESHOLD, 32 << 20))
