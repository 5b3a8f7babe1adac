"""The masked-language-model task: masked windows of a corpus for the trainer, and masked-token
accuracy on held-out text.

    tokenizer = with_mask_token(get_tokenizer("char", text=corpus))
    model = MaskedLM(EncoderConfig.from_gpt(shape, mask_id=tokenizer.mask_id))
    trainer = mlm_trainer(model, train_cfg, data, tokenizer, device, callbacks, group)

Windows come from the same `TokenData` as language-model training; each training batch is
masked with draws seeded by (seed, step, index), and each evaluation batch by its position, so
resuming is exact and every evaluation masks the same tokens.
"""

from __future__ import annotations

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
    """Loss over the masked tokens, and the share of them whose most likely id is the original."""
    total_loss, correct, count = 0.0, 0, 0
    for inputs, labels in batches:
        logits, loss = model(inputs, labels)  # logits (N, V) of the N masked positions
        wanted = labels[labels != IGNORE_INDEX]  # (N,)
        total_loss += loss.float().item() * len(wanted)
        correct += int((logits.argmax(-1) == wanted).sum())
        count += len(wanted)
    return {"loss": total_loss / max(count, 1), "accuracy": correct / max(count, 1)}


def mlm_trainer(model, train_cfg, data, tokenizer, device, callbacks, group):
    """A Trainer of a masked-language model on masked random windows of `data`'s train split,
    evaluated on masked, evenly spread windows of its val split (loss and accuracy)."""
    from gptlab.data.text import _batch_seed
    from gptlab.training.trainer import Trainer

    block = model.config.context_length

    def train_batch(step: int, index: int):
        ids, _ = data.train_batch(step, index, train_cfg.batch_size, block, train_cfg.seed)
        # seed + 1: the masking's own stream, apart from the one that picked the windows
        inputs, labels = masked_batch(ids, tokenizer, _batch_seed(train_cfg.seed + 1, step, index))
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
