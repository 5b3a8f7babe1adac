"""Fine-tuning data taken epoch by epoch, with a step's batch a pure function of (step, index).

A fine-tuning set is small, so training goes through it whole, epoch after epoch, each in its own
order, rather than drawing random windows as language-model pretraining does. Micro-batch
`step * micro_batches_per_step + index` (grad_accum x processes micro-batches a step) is batch k
of epoch e: a resumed run, or one process of several, takes exactly the batch an uninterrupted
run would have taken. An epoch's last partial batch is dropped, so every batch is full.
"""

from __future__ import annotations

import math

from gptlab.errors import DataError


class EpochBatches:
    """Where a training step's batch falls in the epochs; subclasses say what a batch holds."""

    def __init__(self, size: int, batch_size: int, seed: int, micro_batches_per_step: int):
        if not size:
            raise DataError("no examples to make batches of")
        self.size = size
        self.batch_size = min(batch_size, size)
        self.seed = seed
        self.micro_batches_per_step = micro_batches_per_step

    @property
    def batches_per_epoch(self) -> int:
        return self.size // self.batch_size

    def steps_for(self, epochs: float) -> int:
        """Optimizer steps that go through the training examples `epochs` times."""
        return max(1, math.ceil(epochs * self.batches_per_epoch / self.micro_batches_per_step))

    def locate(self, step: int, index: int) -> tuple[int, int]:
        """(epoch, k): micro-batch `index` of training step `step` is batch k of that epoch."""
        return divmod(step * self.micro_batches_per_step + index, self.batches_per_epoch)
