"""The masked-language-model task: masked windows of a corpus for the trainer, and masked-token
loss, perplexity and accuracy on held-out text (during training, and for `gptlab eval`).

    tokenizer = with_mask_token(get_tokenizer("char", text=corpus))
    model = MaskedLM(EncoderConfig.from_gpt(shape, mask_id=tokenizer.mask_id))
    trainer = mlm_trainer(model, train_cfg, data, tokenizer, device, callbacks, group)

Windows come from the same `TokenData` as language-model training; each training batch is
masked with draws seeded by (seed, step, index), and each evaluation batch by its position, so
resuming is exact and every evaluation masks the same tokens.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from gptlab.data.masking import mask_tokens
from gptlab.models.encoder import IGNORE_INDEX


def masked_batch(ids: torch.Tensor, tokenizer, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels) of a batch of token windows (B, T), masked with draws from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    return mask_tokens(
        ids, tokenizer.mask_id, tokenizer.vocab_size, tokenizer.special_ids, generator
    )


@torch.no_grad()
def masked_metrics(model: nn.Module, batches) -> dict:
    """Loss over the masked tokens, its perplexity, the share of them whose most likely id is
    the original (accuracy), and how many there were (masked)."""
    total_loss, correct, count = 0.0, 0, 0
    for inputs, labels in batches:
        logits, loss = model(inputs, labels)  # logits (N, V) of the N masked positions
        wanted = labels[labels != IGNORE_INDEX]  # (N,)
        total_loss += loss.float().item() * len(wanted)
        correct += int((logits.argmax(-1) == wanted).sum())
        count += len(wanted)
    loss = total_loss / max(count, 1)
    return {
        "loss": loss,
        "perplexity": math.exp(loss) if loss < 700 else math.inf,
        "accuracy": correct / max(count, 1),
        "masked": count,
    }


def masked_report(
    model: nn.Module,
    tokens: np.ndarray,
    tokenizer,
    batch_size: int = 8,
    device="cpu",
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """`masked_metrics` over every token of `tokens`, as `gptlab eval` reports it.

    The tokens are cut into consecutive windows of the model's context (the last one may be
    shorter, and is a batch of its own), `batch_size` windows a batch; batch i is masked with
    draws from `seed + i`, so the same model, tokens and seed give the same number at every
    call, on any device. Adds "tokens" (how many were read) to the metrics."""
    from gptlab.errors import DataError

    block = model.config.context_length
    n = len(tokens)
    if n < 2:
        raise DataError("need at least two tokens to mask and predict")
    starts = list(range(0, n - block + 1, block))
    batches = [starts[i : i + batch_size] for i in range(0, len(starts), batch_size)]
    tail = starts[-1] + block if starts else 0
    windows = [
        torch.from_numpy(np.stack([np.asarray(tokens[s : s + block], np.int64) for s in group]))
        for group in batches
    ]
    if tail < n:  # the rest, shorter than a window
        windows.append(torch.from_numpy(np.asarray(tokens[tail:n], np.int64))[None, :])
    if progress:
        from tqdm.auto import tqdm

        windows = tqdm(windows, desc="eval", unit="batch", leave=False)
    was_training = model.training
    model.eval()
    metrics = masked_metrics(
        model,
        (
            tuple(t.to(device) for t in masked_batch(ids, tokenizer, seed + i))
            for i, ids in enumerate(windows)
        ),
    )
    model.train(was_training)
    return {**metrics, "tokens": n}


def mlm_trainer(model, train_cfg, data, tokenizer, device, callbacks, group):
    """A Trainer of a masked-language model on masked random windows of `data`'s train split,
    evaluated on masked, evenly spread windows of its val split (loss and accuracy)."""
    from gptlab.data.text import batch_seed
    from gptlab.training.trainer import Trainer

    block = model.config.context_length

    def train_batch(step: int, index: int):
        ids, _ = data.train_batch(step, index, train_cfg.batch_size, block, train_cfg.seed)
        # seed + 1: the masking's own stream, apart from the one that picked the windows
        inputs, labels = masked_batch(ids, tokenizer, batch_seed(train_cfg.seed + 1, step, index))
        return inputs.to(device), labels.to(device)

    def evaluator(model: nn.Module) -> dict:
        windows = data.eval_batches("val", train_cfg.batch_size, block, train_cfg.eval_iters)
        batches = (
            tuple(t.to(device) for t in masked_batch(ids, tokenizer, i))
            for i, (ids, _) in enumerate(windows)
        )
        return masked_metrics(model, batches)

    return Trainer(
        model,
        train_cfg,
        train_batch=train_batch,
        evaluator=evaluator if train_cfg.eval_interval else None,
        device=device,
        callbacks=callbacks,
        group=group,
    )
