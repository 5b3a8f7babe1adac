"""A BERT-style encoder and its masked-language-model head, built from `gptlab.nn`.

    idx (B, T) --wte + wpe + wtt--> LayerNorm --n_layer x EncoderBlock (post-LN)--> (B, T, C)
        --head: dense, GELU, LayerNorm--> decoder (tied to wte) + bias --> logits (B, T, V)

Where GPT masks the future so that each position predicts the next token, the encoder lets
every position see every other one (only padding is hidden): it cannot predict the next token,
so it is trained to fill in tokens hidden behind a [MASK] (Devlin et al. 2019, 3.1; the
masking itself is `gptlab.data.masking`).

The architecture is BERT's where the numbers depend on it, so a `BertForMaskedLM` checkpoint
maps onto this one (`gptlab.pretrained_bert`): post-LN blocks, a LayerNorm after the summed
embeddings, token-type (segment) embeddings, a prediction head that transforms the hidden
states (dense, GELU, LayerNorm) before the decoder, and the decoder's weight tied to the token
embedding with a bias of its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gptlab.config import EncoderConfig
from gptlab.errors import ContextLengthError
from gptlab.nn.attention import attention_mask
from gptlab.nn.blocks import EncoderBlock
from gptlab.nn.layers import LayerNorm

IGNORE_INDEX = -100  # positions that were not masked add nothing to the loss


class Encoder(nn.Module):
    """Embeddings and a stack of bidirectional post-LN blocks: the body a head reads."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        C = config.n_embd
        self.wte = nn.Embedding(config.vocab_size, C)
        self.wpe = nn.Embedding(config.context_length, C)
        self.wtt = nn.Embedding(config.type_vocab_size, C)  # token types (segments)
        # Post-LN blocks take a normalised input: BERT normalises the summed embeddings.
        self.ln_emb = LayerNorm(C, bias=config.bias, eps=config.layer_norm_eps)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(
            EncoderBlock(
                C,
                config.n_head,
                config.dropout,
                pre_norm=False,
                bias=config.bias,
                eps=config.layer_norm_eps,
                gelu=config.gelu,
            )
            for _ in range(config.n_layer)
        )

    def forward(
        self,
        idx: Tensor,
        padding_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        """The hidden states (B, T, C) of every position.

        idx: (B, T) ids; padding_mask: (B, T) True on real tokens (None: all real);
        token_type_ids: (B, T) segment ids (None: all segment 0)."""
        B, T = idx.shape
        if T > self.config.context_length:
            raise ContextLengthError(
                f"a sequence of {T} tokens is longer than the model's context of {self.config.context_length}"
            )
        positions = torch.arange(T, device=idx.device)
        types = torch.zeros_like(idx) if token_type_ids is None else token_type_ids
        x = self.wte(idx) + self.wpe(positions) + self.wtt(types)  # (B, T, C)
        x = self.drop(self.ln_emb(x))
        # No look-ahead mask: every query sees every real key. (B, 1, 1, T) or none at all.
        mask = None if padding_mask is None else attention_mask(None, padding_mask)
        for block in self.h:
            x = block(x, mask)
        return x


class MaskedLM(nn.Module):
    """The encoder with BERT's masked-language-model head."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        C = config.n_embd
        self.encoder = Encoder(config)
        # The head's transform (BERT's cls.predictions.transform): one more layer, so the last
        # block's states need not be word predictions already.
        self.head_dense = nn.Linear(C, C)
        self.head_ln = LayerNorm(C, bias=config.bias, eps=config.layer_norm_eps)
        self.lm_head = nn.Linear(C, config.vocab_size, bias=True)
        self.apply(self._init_weights)
        self.lm_head.weight = self.encoder.wte.weight  # tied, as BERT's decoder
        nn.init.zeros_(self.lm_head.bias)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # BERT's initialisation: N(0, 0.02) for weights and embeddings, zero biases.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(
        self,
        idx: Tensor,
        targets: Tensor | None = None,
        padding_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Return `(logits, loss)`: without targets, logits (B, T, V) of every position.

        targets (B, T) hold the original ids at masked positions and IGNORE_INDEX elsewhere;
        with them, the head runs on the masked positions only and the logits are theirs,
        (N, V) in the order of `targets[targets != IGNORE_INDEX]`. The head's decoder is most
        of the model's work (V x C per position: 50,258 x 384 against ~12 C^2 per layer for
        gpt2-mini's shape), and 85% of the positions have nothing to predict.
        """
        x = self.encoder(idx, padding_mask, token_type_ids)  # (B, T, C)
        if targets is None:
            return self.predictions(x), None  # (B, T, V)
        chosen = targets != IGNORE_INDEX  # (B, T)
        logits = self.predictions(x[chosen])  # (N, V)
        loss = F.cross_entropy(logits.float(), targets[chosen])
        return logits.detach(), loss  # the loss trains; the logits are for looking at

    def predictions(self, x: Tensor) -> Tensor:
        """Hidden states (..., C) to vocabulary logits (..., V): BERT's transform, then the decoder."""
        return self.lm_head(self.head_ln(F.gelu(self.head_dense(x), approximate=self.config.gelu)))

    def num_params(self) -> int:
        """Number of parameters, the tied embedding counted once."""
        return sum(p.numel() for p in self.parameters())
