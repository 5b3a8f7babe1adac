"""`Seq2SeqConfig`: the shape of an encoder-decoder. Kept free of torch, so that
`gptlab seq2seq train --help` answers at once."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from gptlab.config import POSITION_KINDS, Shape
from gptlab.errors import ConfigError


@dataclass
class Seq2SeqConfig(Shape):
    """The shape of an encoder-decoder; the defaults are a small model for the CPU.

    pad_id, bos_id and eos_id are target-side (and, with shared embeddings, source-side) ids:
    padding is masked out of attention and the loss, BOS starts every target, EOS ends it.
    pre_norm: LayerNorm before each sublayer (GPT-2; trains without a long warmup) or after it
    (the original Transformer). Pre-LN stacks end with a final norm (ln_enc, ln_dec).
    """

    src_vocab_size: int
    tgt_vocab_size: int
    pad_id: int
    bos_id: int
    eos_id: int
    n_encoder_layer: int = 2
    n_decoder_layer: int = 2
    n_head: int = 4
    n_embd: int = 128
    ff_hidden: int | None = None  # the feed-forward's inner width (None: 4 * n_embd)
    dropout: float = 0.1
    pre_norm: bool = True
    positions: str = dataclasses.field(default="sinusoidal", metadata={"choices": POSITION_KINDS})
    shared_embeddings: bool = False  # one table for source and target (a joint vocabulary)
    tie_output: bool = True  # the output projection reads logits off the target embeddings
    max_length: int = 128  # positions of the source, and of the target (BOS included)
    bias: bool = True

    def __post_init__(self):
        if self.n_encoder_layer < 1 or self.n_decoder_layer < 1:
            raise ConfigError("an encoder-decoder needs at least one encoder and decoder layer")
        self.check_shape(("src_vocab_size", "tgt_vocab_size", "n_head", "n_embd", "max_length"))
        if self.positions not in POSITION_KINDS:
            raise ConfigError(f"positions must be one of {', '.join(POSITION_KINDS)}")
        if self.shared_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ConfigError("shared embeddings need one vocabulary: src and tgt sizes differ")
        for name in ("pad_id", "bos_id", "eos_id"):
            if not 0 <= getattr(self, name) < self.tgt_vocab_size:
                raise ConfigError(f"{name} must be a target token id, got {getattr(self, name)}")

    @property
    def vocab_size(self) -> int:
        """The vocabulary the logits range over (the target's): what decoding draws from."""
        return self.tgt_vocab_size

    @property
    def context_length(self) -> int:
        """The longest target the decoder can read, BOS included (the name decoding uses)."""
        return self.max_length
