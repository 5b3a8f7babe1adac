"""The optimizer and the learning-rate schedule.

AdamW with weight decay on matrices only: decaying biases and LayerNorm gains pulls them towards
zero for no benefit (they do not multiply inputs in a way that overfits), so every parameter of
fewer than two dimensions goes in a group without decay (as in GPT-2 and nanoGPT).
"""

from __future__ import annotations

import inspect
import math

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: 2-D and larger parameters decay, the rest (biases, norms) do not."""
    params = [p for p in model.parameters() if p.requires_grad]  # shared (tied) tensors once
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def make_adamw(
    model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float], device_type: str
) -> torch.optim.AdamW:
    """AdamW over `param_groups`, with the fused kernel on CUDA and the CPU: one call for all
    parameters instead of a handful of element-wise ops per tensor. On the CPU it is what makes
    the optimizer cheap for a small model: 2.0 ms a step against 7.0 ms for the per-tensor loop
    (shakespeare-char-cpu, 52 tensors, one thread; benchmarks/vs_reference_cpu.py)."""
    fused = (
        device_type in ("cuda", "cpu")
        and "fused" in inspect.signature(torch.optim.AdamW).parameters
    )
    extra = {"fused": True} if fused else {}
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, **extra)


def cosine_schedule(step: int, lr: float, min_lr: float, warmup: int, decay_steps: int) -> float:
    """Linear warmup to `lr` over `warmup` steps, cosine decay to `min_lr` at `decay_steps`,
    then flat at `min_lr` (Loshchilov & Hutter 2017, without restarts)."""
    if step < warmup:
        return lr * (step + 1) / (warmup + 1)
    if step >= decay_steps:
        return min_lr
    progress = (step - warmup) / max(1, decay_steps - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


def noam_schedule(step: int, lr: float, warmup: int) -> float:
    """Linear warmup to `lr` over `warmup` steps, then decay as 1/sqrt(step) (Vaswani et al.
    2017, 5.3: d_model^-0.5 * min(step^-0.5, step * warmup^-1.5), which peaks at
    (d_model * warmup)^-0.5; here the peak is given as `lr` directly)."""
    step, warmup = step + 1, max(1, warmup)  # the paper counts steps from 1
    return lr * min(step / warmup, (warmup / step) ** 0.5)
