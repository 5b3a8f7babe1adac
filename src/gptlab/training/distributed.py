"""Several processes, one model: the bits of torch.distributed the trainer needs.

`torchrun --nproc_per_node=N -m gptlab train ...` starts N copies of the program with RANK,
LOCAL_RANK and WORLD_SIZE set. Each copy computes gradients on its own batches; DDP averages
them across processes during backward, so every copy takes the same optimizer step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ProcessGroup:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Only the main process writes files and prints progress."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_from_env(device_type: str) -> ProcessGroup:
    """Join the process group torchrun describes in the environment; a no-op when run plainly."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return ProcessGroup()
    group = ProcessGroup(
        int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world_size
    )
    if device_type == "cuda":
        torch.cuda.set_device(group.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return group


def mean_across(value: torch.Tensor, group: ProcessGroup) -> torch.Tensor:
    """The mean of a scalar tensor over all processes (for logging a global loss)."""
    if group.enabled:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= group.world_size
    return value


def shutdown(group: ProcessGroup) -> None:
    if group.enabled and dist.is_initialized():
        dist.destroy_process_group()
