"""GPTClassifier: a GPT body with a classification head on one pooled hidden state.

    idx (B, T) --GPT body--> hidden (B, T, C) --pool--> (B, C) --score--> logits (B, K)

A causal model's last position is the only one that has seen the whole text, so by default the
head reads the hidden state of the last *real* token of each sequence (Radford et al. 2018,
section 3.3, fine-tuned GPT-1 the same way); `pooling="mean"` averages the real positions
instead. The head is `score`, a bias-free linear layer, and the body is kept as `transformer`:
the names of transformers' `GPT2ForSequenceClassification`, so its checkpoints map one to one.
The body's tied language-model head is not used, and, being the embedding table, adds nothing
to the saved weights.

Which parameters train is decided from outside (`gptlab.training.freezing`), like LoRA or
quantization: this file knows nothing of it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gptlab.config import ClassifierConfig
from gptlab.models.gpt import GPT


class GPTClassifier(nn.Module):
    """A GPT body and a linear head over `head.num_classes` classes."""

    def __init__(self, body: GPT, head: ClassifierConfig):
        super().__init__()
        self.head = head
        self.transformer = body
        self.score = nn.Linear(body.config.n_embd, head.num_classes, bias=False)
        nn.init.normal_(self.score.weight, mean=0.0, std=0.02)

    @property
    def config(self):
        """The body's GPTConfig (its shape and context), as on a GPT."""
        return self.transformer.config

    def forward(
        self, idx: Tensor, padding_mask: Tensor | None = None, targets: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Return `(logits, loss)`: logits (B, K); loss the mean cross-entropy when `targets` (B,)
        class ids are given.

        padding_mask: (B, T), True on real tokens, padded on `head.padding_side`; None when
        every position is real. Right padding needs no attention mask: under the causal mask a
        real token never sees the pads that follow it, so the body runs the plain causal path
        (the fast one) and is exact for every real token. Left padding needs the mask, and the
        position ids restart at 0 on each row's first real token, as they did in pretraining.
        """
        positions = None
        attend = None
        if padding_mask is not None and self.head.padding_side == "left":
            positions = (padding_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, T)
            attend = padding_mask
        x = self.transformer.hidden_states(
            idx, positions=positions, padding_mask=attend
        )  # (B, T, C)
        pooled = self.pool(x, padding_mask)  # (B, C)
        logits = self.score(pooled)  # (B, K)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.float(), targets)
        return logits.detach(), loss

    def pool(self, x: Tensor, padding_mask: Tensor | None) -> Tensor:
        """(B, T, C) hidden states to (B, C): the last real token's, the first token's (an
        encoder's: it has seen every other one), or the real tokens' mean."""
        if self.head.pooling == "first":  # right padding: position 0 is always real
            return x[:, 0, :]
        if padding_mask is None:
            return x[:, -1, :] if self.head.pooling == "last" else x.mean(dim=1)
        if self.head.pooling == "mean":
            weights = padding_mask.to(x.dtype).unsqueeze(-1)  # (B, T, 1)
            return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
        # The index of the last True on each row, whichever side the padding is on.
        T = padding_mask.size(1)
        positions = torch.arange(T, device=padding_mask.device)  # (T,)
        last = (positions * padding_mask).argmax(dim=-1)  # (B,)
        return x[torch.arange(x.size(0), device=x.device), last]  # (B, C)

    def num_params(self) -> int:
        """Number of parameters, the body's tied embedding counted once."""
        return sum(p.numel() for p in self.parameters())

    @torch.no_grad()
    def predict_proba(self, idx: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """Class probabilities (B, K), in float32."""
        logits, _ = self(idx, padding_mask)
        return torch.softmax(logits.float(), dim=-1)


class EncoderClassifier(GPTClassifier):
    """The same head on a bidirectional encoder (`gptlab.models.encoder.Encoder`, the body of a
    masked-language model): every position sees the whole text, so the first token's state
    (BERT's [CLS] position, Devlin et al. 2019, 3) or the mean serve as well as the last.

    With `head.pooler`, the first token's state passes through BERT's pooler, a dense layer and
    tanh, before `score`: the layer BertForSequenceClassification always has, so that such a
    classifier exports to it (`gptlab.pretrained_bert`). BERT trained its pooler on
    next-sentence prediction; an MLM run has none, so here it starts as the identity (the head
    first reads tanh of the first token's state) and trains with the head. A random N(0, 0.02)
    start shrinks that state about sixfold at width 64 and the gradient reaching the body
    with it: on SMS spam (docs/mlm.md) the validation loss after 200 steps was 0.46 against
    0.42 from the identity."""

    def __init__(self, body, head: ClassifierConfig):
        super().__init__(body, head)
        if head.pooler:
            C = body.config.n_embd
            self.pooler = nn.Linear(C, C)
            nn.init.eye_(self.pooler.weight)  # (C, C)
            nn.init.zeros_(self.pooler.bias)

    def forward(
        self, idx: Tensor, padding_mask: Tensor | None = None, targets: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """As GPTClassifier's; the padding mask is always applied (no causal mask hides pads)."""
        x = self.transformer(idx, padding_mask)  # (B, T, C)
        pooled = self.pool(x, padding_mask)  # (B, C)
        if self.head.pooler:
            pooled = torch.tanh(self.pooler(pooled))  # (B, C)
        logits = self.score(pooled)  # (B, K)
        if targets is None:
            return logits, None
        return logits.detach(), F.cross_entropy(logits.float(), targets)
