"""Building blocks of transformers that know nothing of tasks."""

from gptlab.nn.attention import (
    KVCache,
    MultiHeadAttention,
    attention,
    attention_mask,
    causal_mask,
    padding_mask_from_ids,
    padding_mask_from_lengths,
)
from gptlab.nn.blocks import AddNorm, DecoderBlock, EncoderBlock, GPTBlock
from gptlab.nn.layers import FeedForward, LayerNorm, layer_norm
from gptlab.nn.position import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    TokenEmbedding,
)

__all__ = [
    "AddNorm",
    "DecoderBlock",
    "EncoderBlock",
    "FeedForward",
    "GPTBlock",
    "KVCache",
    "LayerNorm",
    "LearnedPositionalEmbedding",
    "MultiHeadAttention",
    "SinusoidalPositionalEncoding",
    "TokenEmbedding",
    "attention",
    "attention_mask",
    "causal_mask",
    "layer_norm",
    "padding_mask_from_ids",
    "padding_mask_from_lengths",
]
