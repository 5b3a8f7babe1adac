"""Evaluating models: a language model's loss and perplexity over a whole token sequence, a
classifier's accuracy, F1 and confusion matrix, and (in `overlap`) generated text scored against
references with BLEU, chrF and ROUGE."""

from __future__ import annotations

import math
from contextlib import nullcontext

import numpy as np
import torch
from torch import nn

from gptlab.errors import DataError
from gptlab.evaluation.overlap import (
    bleu,
    chrf,
    format_text_metrics,
    lowercase_tokenized_bleu,
    metric_libraries,
    rouge,
    text_metrics,
)

__all__ = [
    "bleu",
    "chrf",
    "classification_metrics",
    "classify_batches",
    "format_text_metrics",
    "lowercase_tokenized_bleu",
    "metric_libraries",
    "perplexity",
    "rouge",
    "text_metrics",
]


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


# -- classification -----------------------------------------------------------------------


def classification_metrics(predicted: list[int], actual: list[int], names: list[str]) -> dict:
    """Accuracy, macro-F1, per-class precision / recall / F1 / support, and the confusion matrix
    (`confusion[i][j]`: examples of class i predicted as j).

    A class never predicted has precision 0, and one absent from `actual` recall 0, as
    scikit-learn reports them (with `zero_division=0`).
    """
    if len(predicted) != len(actual) or not actual:
        raise DataError("need as many predictions as labels, and at least one")
    K = len(names)
    confusion = [[0] * K for _ in range(K)]
    for p, a in zip(predicted, actual, strict=True):
        confusion[a][p] += 1
    per_class = {}
    for k, name in enumerate(names):
        true_positive = confusion[k][k]
        predicted_k = sum(confusion[i][k] for i in range(K))
        actual_k = sum(confusion[k])
        precision = true_positive / predicted_k if predicted_k else 0.0
        recall = true_positive / actual_k if actual_k else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": actual_k}
    return {
        "accuracy": sum(confusion[k][k] for k in range(K)) / len(actual),
        "macro_f1": sum(c["f1"] for c in per_class.values()) / K,
        "per_class": per_class,
        "confusion": confusion,
        "labels": list(names),
        "examples": len(actual),
    }


@torch.no_grad()
def classify_batches(
    model: nn.Module, batches, autocast=nullcontext
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Run a classifier over `(idx, padding_mask, labels)` batches, each under `autocast()`.

    Returns (probabilities (N, K) on the CPU, labels (N,), mean loss).
    """
    was_training = model.training
    model.eval()
    probabilities, labels, loss_sum = [], [], torch.zeros(())
    for idx, mask, target in batches:
        with autocast():
            logits, loss = model(idx, mask, target)
        probabilities.append(torch.softmax(logits.float(), dim=-1).cpu())
        labels.append(target.cpu())
        loss_sum = loss_sum + loss.float().cpu() * len(target)
    model.train(was_training)
    labels = torch.cat(labels)
    return torch.cat(probabilities), labels, (loss_sum / len(labels)).item()
