"""Evaluating a language model: loss and perplexity over a whole token sequence."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from gptlab.errors import DataError


@torch.no_grad()
def perplexity(
    model: nn.Module,
    tokens: np.ndarray,
    block_size: int,
    batch_size: int = 8,
    device="cpu",
    progress: bool = False,
) -> dict:
    """Mean next-token loss and perplexity of `model` over every token of `tokens`.

    The sequence is cut into consecutive windows of `block_size` predictions (the last one may
    be shorter), so each token is predicted once, from the context since its window began.
    Returns {"loss", "perplexity", "tokens"}.
    """
    n = len(tokens) - 1  # the first token is never predicted
    if n < 1:
        raise DataError("need at least two tokens to measure perplexity")
    starts = list(range(0, n, block_size))
    total_loss, total_count = 0.0, 0
    batches = range(0, len(starts), batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="eval", unit="batch", leave=False)
    was_training = model.training
    model.eval()
    for first in batches:
        for length, group in _group_by_length(starts[first : first + batch_size], block_size, n):
            window = np.stack(
                [np.asarray(tokens[s : s + length + 1], dtype=np.int64) for s in group]
            )
            window = torch.from_numpy(window).to(device)
            _, loss = model(window[:, :-1], window[:, 1:])
            total_loss += loss.float().item() * window[:, 1:].numel()
            total_count += window[:, 1:].numel()
    model.train(was_training)
    loss = total_loss / total_count
    return {
        "loss": loss,
        "perplexity": math.exp(loss) if loss < 700 else math.inf,
        "tokens": total_count,
    }


def _group_by_length(starts: list[int], block_size: int, n: int):
    """Windows of equal length batch together; only the last window of the sequence is shorter."""
    full = [s for s in starts if s + block_size <= n]
    if full:
        yield block_size, full
    for s in starts:
        if s + block_size > n:
            yield n - s, [s]
