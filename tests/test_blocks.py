"""Residual Add & Norm, the encoder and decoder blocks, a stack of them, and GPT's block."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from gptlab.nn.attention import attention_mask, causal_mask, padding_mask_from_ids
from gptlab.nn.blocks import AddNorm, DecoderBlock, EncoderBlock, GPTBlock
from gptlab.nn.layers import layer_norm
from gptlab.nn.position import SinusoidalPositionalEncoding, TokenEmbedding

B, T, S, C, NH = 2, 6, 5, 16, 4


def randomize_norms_(module: nn.Module) -> None:
    """Give every LayerNorm a non-identity scale and shift, so a misplaced norm shows."""
    torch.manual_seed(10)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if "norm" in name or "ln_" in name:
                param.normal_(1.0 if name.endswith("weight") else 0.0, 0.3)


def norm_of(add_norm: AddNorm, x: torch.Tensor) -> torch.Tensor:
    return layer_norm(x, add_norm.norm.weight, add_norm.norm.bias)


# --- Add & Norm ---


@pytest.mark.parametrize("pre_norm", [True, False])
def test_add_norm_equals_its_formula(pre_norm):
    torch.manual_seed(0)
    add_norm, sublayer = AddNorm(C, pre_norm=pre_norm), nn.Linear(C, C)
    randomize_norms_(add_norm)
    x = torch.randn(B, T, C)
    if pre_norm:
        expected = x + sublayer(norm_of(add_norm, x))  # x + sublayer(norm(x))
    else:
        expected = norm_of(add_norm, x + sublayer(x))  # norm(x + sublayer(x))
    assert_close(add_norm(x, sublayer), expected)


def test_pre_ln_leaves_the_residual_path_unnormalised():
    x = 5 * torch.randn(B, T, C)
    assert torch.equal(AddNorm(C, pre_norm=True)(x, torch.zeros_like), x)
    assert_close(AddNorm(C, pre_norm=False)(x, torch.zeros_like), layer_norm(x, None, None))


def test_add_norm_drops_the_sublayer_output_in_training_only():
    torch.manual_seed(0)
    add_norm = AddNorm(C, dropout=0.5)
    x = torch.randn(B, T, C)
    assert torch.equal(add_norm.eval()(x, torch.ones_like), x + 1)
    dropped = add_norm.train()(x, torch.ones_like) - x  # 0 or 1 / (1 - p) = 2 everywhere
    assert set(dropped.round().unique().tolist()) == {0.0, 2.0}


# --- Encoder block ---


@pytest.mark.parametrize("pre_norm", [True, False])
def test_encoder_block_is_self_attention_then_feed_forward(pre_norm):
    torch.manual_seed(0)
    block = EncoderBlock(C, NH, pre_norm=pre_norm).eval()
    randomize_norms_(block)
    x = torch.randn(B, S, C)
    if pre_norm:
        h = x + block.self_attn(norm_of(block.attn_norm, x))
        expected = h + block.mlp(norm_of(block.mlp_norm, h))
    else:
        h = norm_of(block.attn_norm, x + block.self_attn(x))
        expected = norm_of(block.mlp_norm, h + block.mlp(h))
    assert_close(block(x), expected)


def test_encoder_block_lets_every_position_see_the_whole_sequence():
    torch.manual_seed(0)
    block = EncoderBlock(C, NH).eval()
    x = torch.randn(B, S, C)
    changed = x.clone()
    changed[:, -1] = torch.randn(B, C)
    assert not torch.allclose(block(changed)[:, 0], block(x)[:, 0])


def test_encoder_block_ignores_padded_positions():
    torch.manual_seed(0)
    block = EncoderBlock(C, NH).eval()
    padding = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)  # (B, S)
    mask = attention_mask(padding=padding)
    x = torch.randn(B, S, C)
    changed = torch.where(padding[..., None], x, torch.randn(B, S, C))
    assert_close(block(changed, mask)[padding], block(x, mask)[padding], rtol=0, atol=0)


# --- Decoder block ---


@pytest.mark.parametrize("pre_norm", [True, False])
def test_decoder_block_is_self_attention_cross_attention_then_feed_forward(pre_norm):
    torch.manual_seed(0)
    block = DecoderBlock(C, NH, pre_norm=pre_norm).eval()
    randomize_norms_(block)
    x, memory = torch.randn(B, T, C), torch.randn(B, S, C)
    if pre_norm:
        h = x + block.self_attn(norm_of(block.self_attn_norm, x), is_causal=True)
        h = h + block.cross_attn(norm_of(block.cross_attn_norm, h), context=memory)
        expected = h + block.mlp(norm_of(block.mlp_norm, h))
    else:
        h = norm_of(block.self_attn_norm, x + block.self_attn(x, is_causal=True))
        h = norm_of(block.cross_attn_norm, h + block.cross_attn(h, context=memory))
        expected = norm_of(block.mlp_norm, h + block.mlp(h))
    assert_close(block(x, memory), expected)


def test_decoder_block_with_explicit_causal_mask_equals_default():
    torch.manual_seed(0)
    block = DecoderBlock(C, NH).eval()
    x, memory = torch.randn(B, T, C), torch.randn(B, S, C)
    assert_close(block(x, memory, self_mask=attention_mask(causal_mask(T))), block(x, memory))


def test_decoder_block_output_at_t_ignores_later_targets():
    torch.manual_seed(0)
    block = DecoderBlock(C, NH).eval()
    x, memory = torch.randn(B, T, C), torch.randn(B, S, C)
    changed = x.clone()
    changed[:, 3:] = torch.randn(B, T - 3, C)
    assert_close(block(changed, memory)[:, :3], block(x, memory)[:, :3], rtol=0, atol=0)


def test_decoder_block_depends_on_the_memory():
    torch.manual_seed(0)
    block = DecoderBlock(C, NH).eval()
    x, memory = torch.randn(B, T, C), torch.randn(B, S, C)
    assert not torch.allclose(block(x, torch.randn(B, S, C)), block(x, memory))


def test_decoder_block_ignores_padded_memory():
    torch.manual_seed(0)
    block = DecoderBlock(C, NH).eval()
    padding = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)  # (B, S)
    x, memory = torch.randn(B, T, C), torch.randn(B, S, C)
    changed = torch.where(padding[..., None], memory, torch.randn(B, S, C))
    mask = attention_mask(padding=padding)
    assert_close(
        block(x, changed, memory_mask=mask), block(x, memory, memory_mask=mask), rtol=0, atol=0
    )


# --- A stack of encoder and decoder blocks run together ---


class TinyTransformer(nn.Module):
    """The original Transformer's shape in miniature: embed, encode the source, decode the target."""

    def __init__(self, vocab_size: int = 30, n_layer: int = 2, pre_norm: bool = True):
        super().__init__()
        self.embed = TokenEmbedding(vocab_size, C, scale=True)
        self.positions = SinusoidalPositionalEncoding(16, C)
        self.encoder = nn.ModuleList(EncoderBlock(C, NH, pre_norm=pre_norm) for _ in range(n_layer))
        self.decoder = nn.ModuleList(DecoderBlock(C, NH, pre_norm=pre_norm) for _ in range(n_layer))

    def forward(
        self, source: torch.Tensor, target: torch.Tensor, source_padding: torch.Tensor
    ) -> torch.Tensor:
        """source: (B, S) ids, target: (B, T) ids, source_padding: (B, S) True on real tokens."""
        source_mask = attention_mask(padding=source_padding)  # (B, 1, 1, S)
        memory = self.embed(source) + self.positions(torch.arange(source.size(1)))
        for block in self.encoder:
            memory = block(memory, source_mask)
        x = self.embed(target) + self.positions(torch.arange(target.size(1)))
        for block in self.decoder:
            x = block(x, memory, memory_mask=source_mask)
        return x  # (B, T, C)


@pytest.fixture(params=[True, False], ids=["pre-LN", "post-LN"])
def transformer(request) -> TinyTransformer:
    torch.manual_seed(0)
    return TinyTransformer(pre_norm=request.param).eval()


SOURCE = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12]])  # 0 pads the first row
SOURCE_PADDING = padding_mask_from_ids(SOURCE, pad_id=0)
TARGET = torch.tensor([[1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]])


def test_stack_decoder_output_does_not_depend_on_future_target_tokens(transformer):
    changed = TARGET.clone()
    changed[:, 4:] = torch.tensor([[20, 21], [22, 23]])
    out = transformer(SOURCE, TARGET, SOURCE_PADDING)
    assert_close(transformer(SOURCE, changed, SOURCE_PADDING)[:, :4], out[:, :4], rtol=0, atol=0)


def test_stack_decoder_output_depends_on_the_source(transformer):
    changed = SOURCE.clone()
    changed[:, 0] = 29
    out, changed_out = (
        transformer(SOURCE, TARGET, SOURCE_PADDING),
        transformer(changed, TARGET, SOURCE_PADDING),
    )
    assert ((changed_out - out).abs().amax(-1) > 1e-4).all()  # every target position sees it


def test_stack_source_padding_does_not_leak(transformer):
    changed = SOURCE.clone()
    changed[0, 3:] = torch.tensor(
        [13, 14]
    )  # other tokens in the padded slots, still marked as padding
    out = transformer(SOURCE, TARGET, SOURCE_PADDING)
    assert_close(transformer(changed, TARGET, SOURCE_PADDING), out, rtol=0, atol=0)
    unmasked = torch.ones_like(SOURCE_PADDING)
    assert not torch.allclose(
        transformer(changed, TARGET, unmasked), transformer(SOURCE, TARGET, unmasked)
    )


# --- GPT's block ---


def test_gpt_block_is_pre_ln_causal_attention_then_feed_forward():
    torch.manual_seed(0)
    block = GPTBlock(C, NH).eval()
    randomize_norms_(block)
    x = torch.randn(B, T, C)
    h = x + block.attn(layer_norm(x, block.ln_1.weight, block.ln_1.bias), is_causal=True)
    expected = h + block.mlp(layer_norm(h, block.ln_2.weight, block.ln_2.bias))
    assert_close(block(x), expected)


def test_gpt_block_output_at_t_ignores_later_positions():
    torch.manual_seed(0)
    block = GPTBlock(C, NH).eval()
    x = torch.randn(B, T, C)
    changed = x.clone()
    changed[:, 2:] = torch.randn(B, T - 2, C)
    assert_close(block(changed)[:, :2], block(x)[:, :2], rtol=0, atol=0)


def test_gpt_block_with_explicit_causal_mask_equals_default():
    torch.manual_seed(0)
    block = GPTBlock(C, NH).eval()
    x = torch.randn(B, T, C)
    assert_close(block(x, mask=attention_mask(causal_mask(T))), block(x))


def test_gpt_block_parameters_carry_gpt2_names():
    names = {name for name, _ in GPTBlock(C, NH).named_parameters()}
    expected = {
        f"{module}.{kind}"
        for module in ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj")
        for kind in ("weight", "bias")
    }
    assert names == expected


def test_gpt_block_layer_norm_eps_reaches_both_norms():
    block = GPTBlock(C, NH, eps=1e-3)
    assert block.ln_1.eps == block.ln_2.eps == 1e-3
