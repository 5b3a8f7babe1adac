"""Masking for masked-language-model training (Devlin et al. 2019, 3.1).

15% of the tokens are chosen for prediction. Of those, 80% are replaced by [MASK], 10% by a
random token and 10% left as they are: the model must predict every chosen token, and since a
token it sees may have been swapped or may be the chosen one itself, it has to keep a good
representation of every input token, not only of the [MASK]s (which it never sees after
pretraining). Special tokens ([MASK] itself, end-of-text) are never chosen. The labels hold the
original id at chosen positions and IGNORE_INDEX elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from gptlab.models.encoder import IGNORE_INDEX


def mask_tokens(
    ids: Tensor,
    mask_id: int,
    vocab_size: int,
    special_ids: Iterable[int] = (),
    generator: torch.Generator | None = None,
    probability: float = 0.15,
    padding_mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """(inputs, labels) for ids (B, T); `padding_mask` (B, T), True on real tokens, keeps
    padding from being chosen. The draws come from `generator` (on the CPU), so a batch is the
    same at every call with the same seed, whatever the device of `ids`."""
    device = ids.device
    ids = ids.cpu()
    special = torch.tensor(sorted({mask_id, *special_ids}), dtype=ids.dtype)
    can_mask = ~torch.isin(ids, special)  # (B, T)
    if padding_mask is not None:
        can_mask &= padding_mask.cpu()
    chosen = (torch.rand(ids.shape, generator=generator) < probability) & can_mask
    if not chosen.any() and can_mask.any():  # a short batch: predict at least one token
        flat = can_mask.flatten().nonzero().squeeze(1)
        pick = flat[torch.randint(len(flat), (1,), generator=generator)]
        chosen.view(-1)[pick] = True
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE_INDEX))
    roll = torch.rand(ids.shape, generator=generator)
    inputs = ids.clone()
    inputs[chosen & (roll < 0.8)] = mask_id
    randomised = chosen & (roll >= 0.8) & (roll < 0.9)
    # Random replacements come from the ordinary tokens only: a random [MASK] would be a mask.
    ordinary = torch.ones(vocab_size, dtype=torch.bool)
    ordinary[special] = False
    choices = ordinary.nonzero().squeeze(1)
    draws = torch.randint(len(choices), ids.shape, generator=generator)
    inputs[randomised] = choices[draws][randomised].to(ids.dtype)
    return inputs.to(device), labels.to(device)
