"""The encoder-decoder Transformer of Vaswani et al. 2017, built from the same blocks as the GPT.

    src (B, S) --src_embed + src_pos--> n x EncoderBlock --ln_enc--> memory (B, S, C)
    tgt (B, T) --tgt_embed + tgt_pos--> n x DecoderBlock(memory) --ln_dec--> lm_head --> (B, T, V)

The encoder reads the whole source at once (no look-ahead mask: every source token sees every
other); the decoder is a GPT that, in each block, also looks at the encoder's output through
cross-attention. The source's padding is hidden from both; the target is hidden from its own
future by the look-ahead mask, which also hides right-padding from every real position.

For decoding (`gptlab.generation.seq2seq`) the pieces are called apart: `encode` once per
source, `memory_kv` once per source for every decoder block's cross-attention, then `decode`
one token at a time with a KV cache of the decoder's self-attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gptlab.errors import ContextLengthError
from gptlab.models.seq2seq_config import Seq2SeqConfig
from gptlab.nn.attention import KVCache, attention_mask, causal_mask
from gptlab.nn.blocks import DecoderBlock, EncoderBlock
from gptlab.nn.layers import LayerNorm
from gptlab.nn.position import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    TokenEmbedding,
)

IGNORE_INDEX = -100  # targets with this value add nothing to the loss (as in F.cross_entropy)

__all__ = ["IGNORE_INDEX", "Seq2Seq", "Seq2SeqConfig", "seq2seq_loss", "shift_right"]


class Seq2Seq(nn.Module):
    """The encoder-decoder. `forward(src, tgt_in)` gives next-token logits of the target."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.config = config
        C = config.n_embd
        # Embeddings are scaled by sqrt(C) (Vaswani et al. 2017, 3.4) and start with std
        # 1/sqrt(C) (see _init_weights): the tokens enter at the size of the encodings.
        self.src_embed = TokenEmbedding(config.src_vocab_size, C, scale=True)
        self.tgt_embed = (
            self.src_embed
            if config.shared_embeddings
            else TokenEmbedding(config.tgt_vocab_size, C, scale=True)
        )
        self.src_pos = self._positions(config)
        self.tgt_pos = self.src_pos if config.positions == "sinusoidal" else self._positions(config)
        self.drop = nn.Dropout(config.dropout)
        block_args = (C, config.n_head, config.dropout, config.pre_norm, config.bias)
        self.encoder = nn.ModuleList(
            EncoderBlock(*block_args, ff_hidden=config.ff_hidden)
            for _ in range(config.n_encoder_layer)
        )
        self.decoder = nn.ModuleList(
            DecoderBlock(*block_args, ff_hidden=config.ff_hidden)
            for _ in range(config.n_decoder_layer)
        )
        # Pre-LN leaves the residual stream unnormalised: a last norm makes it readable. Post-LN
        # blocks end with a norm already.
        self.ln_enc = LayerNorm(C, bias=config.bias) if config.pre_norm else nn.Identity()
        self.ln_dec = LayerNorm(C, bias=config.bias) if config.pre_norm else nn.Identity()
        self.lm_head = nn.Linear(C, config.tgt_vocab_size, bias=False)
        self.apply(self._init_weights)
        if config.tie_output:  # Press & Wolf 2017, as in Vaswani et al. 2017, 3.4
            self.lm_head.weight = self.tgt_embed.weight

    @staticmethod
    def _positions(config: Seq2SeqConfig) -> nn.Module:
        if config.positions == "learned":
            return LearnedPositionalEmbedding(config.max_length, config.n_embd)
        return SinusoidalPositionalEncoding(config.max_length, config.n_embd)

    def _init_weights(self, module: nn.Module) -> None:
        # Xavier-uniform matrices, as torch.nn.Transformer and the reference implementations
        # of the original model start them; embeddings at std 1/sqrt(C), so that after the
        # sqrt(C) scale they have unit size, and a tied output gives logits of unit size.
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, TokenEmbedding):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.n_embd**-0.5)
        elif isinstance(module, LearnedPositionalEmbedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    # -- the two halves --------------------------------------------------------------------

    def encode(self, src: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """The encoder's output, memory (B, S, C), of source ids (B, S).

        src_mask: (B, S) True on real tokens; None reads the padding off `pad_id`.
        """
        B, S = src.shape
        self._check_length(S, "source")
        src_mask = self.source_mask(src, src_mask)
        mask = attention_mask(padding=src_mask)  # (B, 1, 1, S)
        positions = torch.arange(S, device=src.device)
        x = self.drop(self.src_embed(src) + self.src_pos(positions))  # (B, S, C)
        for block in self.encoder:
            x = block(x, mask)
        return self.ln_enc(x)

    def decode(
        self,
        tgt: Tensor,
        memory: Tensor | None,
        src_mask: Tensor | None = None,
        tgt_mask: Tensor | None = None,
        *,
        kv_cache: list[KVCache] | None = None,
        input_pos: Tensor | None = None,
        memory_kv: list[tuple[Tensor, Tensor]] | None = None,
    ) -> Tensor:
        """Next-token logits (B, T, V) of target ids (B, T) given the memory (B, S, C).

        src_mask: (B, S) True on real source tokens (None: no source padding).
        tgt_mask: (B, T) True on real target tokens, for left-padded targets; right padding
        needs none, since the look-ahead mask already hides it from every real position.
        For decoding: `kv_cache` (from `new_kv_cache`) and `input_pos` (T,), the slots these
        tokens take, keep the self-attention's past; `memory_kv` (from `memory_kv`) replaces
        `memory` in every block's cross-attention.
        """
        B, T = tgt.shape
        if kv_cache is None:
            self._check_length(T, "target")
            input_pos = torch.arange(T, device=tgt.device)
            self_mask = (
                None
                if tgt_mask is None
                else attention_mask(causal_mask(T, device=tgt.device), tgt_mask)
            )
        else:
            slots = torch.arange(kv_cache[0].max_length, device=tgt.device)
            self_mask = attention_mask(slots[None, :] <= input_pos[:, None], tgt_mask)
        memory_mask = None if src_mask is None else attention_mask(padding=src_mask)
        x = self.drop(self.tgt_embed(tgt) + self.tgt_pos(input_pos))  # (B, T, C)
        for i, block in enumerate(self.decoder):
            x = block(
                x,
                memory,
                self_mask,
                memory_mask,
                kv_cache=None if kv_cache is None else kv_cache[i],
                input_pos=input_pos,
                memory_kv=None if memory_kv is None else memory_kv[i],
            )
        return self.lm_head(self.ln_dec(x))  # (B, T, V)

    def forward(
        self,
        src: Tensor,
        tgt_in: Tensor,
        src_mask: Tensor | None = None,
        tgt_mask: Tensor | None = None,
    ) -> Tensor:
        """Logits (B, T, V) of the next target token at each position, for teacher forcing:
        tgt_in is the target shifted right (BOS first). Masks as in `encode` and `decode`."""
        src_mask = self.source_mask(src, src_mask)
        memory = self.encode(src, src_mask)
        return self.decode(tgt_in, memory, src_mask, tgt_mask)

    # -- decoding --------------------------------------------------------------------------

    def memory_kv(self, memory: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Each decoder block's cross-attention keys and values of the memory, once per source."""
        return [block.memory_kv(memory) for block in self.decoder]

    def new_kv_cache(
        self, batch_size: int, max_length: int | None = None, dtype=None, device=None
    ) -> list[KVCache]:
        """One preallocated self-attention cache per decoder block, for `max_length` targets."""
        c = self.config
        max_length = c.max_length if max_length is None else max_length
        self._check_length(max_length, "target")
        weight = self.lm_head.weight
        return [
            KVCache(
                batch_size,
                max_length,
                c.n_head,
                c.head_size,
                dtype or weight.dtype,
                device or weight.device,
            )
            for _ in range(c.n_decoder_layer)
        ]

    # -- helpers ---------------------------------------------------------------------------

    def source_mask(self, src: Tensor, src_mask: Tensor | None) -> Tensor:
        """(B, S) True on real source tokens: `src_mask`, or the tokens that are not padding."""
        return src != self.config.pad_id if src_mask is None else src_mask

    def _check_length(self, length: int, side: str) -> None:
        if length > self.config.max_length:
            raise ContextLengthError(
                f"a {side} of {length} tokens is longer than the model's maximum of "
                f"{self.config.max_length}"
            )

    def num_params(self) -> int:
        """Number of parameters, each shared (tied) tensor counted once."""
        return sum(p.numel() for p in self.parameters())


def seq2seq_loss(
    logits: Tensor, targets: Tensor, label_smoothing: float = 0.0, ignore_index: int = IGNORE_INDEX
) -> Tensor:
    """Mean cross-entropy of logits (B, T, V) against targets (B, T), skipping `ignore_index`.

    label_smoothing: the share of each target's probability spread evenly over the whole
    vocabulary (Szegedy et al. 2016; 0.1 in Vaswani et al. 2017, 5.4). It hurts perplexity and
    helps BLEU: the model learns to be less sure.
    """
    V = logits.size(-1)
    return F.cross_entropy(
        logits.reshape(-1, V).float(),
        targets.reshape(-1),
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
    )


def shift_right(tgt: Tensor, bos_id: int, pad_id: int) -> tuple[Tensor, Tensor]:
    """(decoder input, loss targets) of right-padded targets (B, T) ending with EOS: the input
    is BOS then the target minus its last token, the loss target is the target with padding set
    to IGNORE_INDEX."""
    bos = torch.full_like(tgt[:, :1], bos_id)
    tgt_in = torch.cat([bos, tgt[:, :-1]], dim=1)  # (B, T)
    return tgt_in, tgt.masked_fill(tgt == pad_id, IGNORE_INDEX)
