"""LayerNorm, the position-wise feed-forward network, token embeddings and positional encodings."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from gptlab.nn.layers import FeedForward, LayerNorm, layer_norm
from gptlab.nn.position import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    TokenEmbedding,
)

C = 16


def torch_layer_norm(bias: bool, seed: int = 0) -> nn.LayerNorm:
    """PyTorch's LayerNorm with random (not identity) scale and shift."""
    torch.manual_seed(seed)
    norm = nn.LayerNorm(C, bias=bias)
    with torch.no_grad():
        norm.weight.normal_(1.0, 0.5)
        if bias:
            norm.bias.normal_(0.0, 0.5)
    return norm


@pytest.mark.parametrize("bias", [True, False])
def test_layer_norm_reference_equals_torch_layer_norm(bias):
    expected = torch_layer_norm(bias)
    x = 3 * torch.randn(4, 5, C) + 1
    out = layer_norm(x, expected.weight, expected.bias, eps=expected.eps)
    assert_close(out, expected(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("bias", [True, False])
def test_layer_norm_module_equals_torch_layer_norm(bias):
    expected = torch_layer_norm(bias)
    norm = LayerNorm(C, bias=bias)
    norm.load_state_dict(expected.state_dict())
    x = 3 * torch.randn(4, 5, C) + 1
    assert_close(norm(x), expected(x), rtol=0, atol=1e-6)


def test_layer_norm_without_bias_has_no_bias_parameter():
    assert [name for name, _ in LayerNorm(C, bias=False).named_parameters()] == ["weight"]


def test_layer_norm_at_init_gives_zero_mean_unit_variance():
    torch.manual_seed(0)
    out = LayerNorm(C)(5 * torch.randn(8, C) - 2)
    assert_close(out.mean(-1), torch.zeros(8), rtol=0, atol=1e-6)
    assert_close(out.var(-1, unbiased=False), torch.ones(8), rtol=0, atol=1e-4)


def tanh_gelu(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's GELU, the tanh approximation (Hendrycks & Gimpel 2016), written out."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def test_feed_forward_is_expand_tanh_gelu_project():
    torch.manual_seed(0)
    ff = FeedForward(C)
    x = 4 * torch.randn(2, 3, C)  # wide inputs, where the tanh and erf GELUs differ
    hidden = x @ ff.c_fc.weight.T + ff.c_fc.bias  # (B, T, 4C)
    expected = tanh_gelu(hidden) @ ff.c_proj.weight.T + ff.c_proj.bias
    assert_close(ff(x), expected, rtol=0, atol=1e-6)
    erf_gelu = F.gelu(hidden) @ ff.c_proj.weight.T + ff.c_proj.bias
    assert (ff(x) - erf_gelu).abs().max() > 1e-4  # the check above tells the two apart


def test_feed_forward_hidden_width_is_four_times_the_model_width():
    ff = FeedForward(C)
    assert ff.c_fc.weight.shape == (4 * C, C)
    assert ff.c_proj.weight.shape == (C, 4 * C)


def test_feed_forward_treats_each_position_alone():
    torch.manual_seed(0)
    ff = FeedForward(C)
    x = torch.randn(2, 6, C)
    order = torch.randperm(6)
    assert_close(ff(x[:, order]), ff(x)[:, order])
    assert_close(ff(x[:, 2:3]), ff(x)[:, 2:3])


def test_token_embedding_returns_the_row_of_each_id():
    torch.manual_seed(0)
    embedding = TokenEmbedding(10, C)
    idx = torch.tensor([[3, 0, 9], [3, 3, 1]])
    out = embedding(idx)  # (B, T, C)
    assert out.shape == (2, 3, C)
    assert torch.equal(out[1, 1], embedding.weight[3])
    assert torch.equal(out[0, 2], embedding.weight[9])


def test_token_embedding_scale_multiplies_by_sqrt_width():
    torch.manual_seed(0)
    scaled = TokenEmbedding(10, C, scale=True)
    idx = torch.tensor([[1, 2]])
    assert_close(scaled(idx), scaled.weight[idx] * math.sqrt(C))


def test_learned_positional_embedding_is_one_trained_vector_per_position():
    embedding = LearnedPositionalEmbedding(12, C)
    assert [(name, p.shape) for name, p in embedding.named_parameters()] == [("weight", (12, C))]
    assert torch.equal(embedding(torch.arange(3)), embedding.weight[:3])


def test_learned_positional_embedding_crop_keeps_the_first_positions():
    torch.manual_seed(0)
    embedding = LearnedPositionalEmbedding(12, C)
    first = embedding.weight[:5].detach().clone()
    embedding.crop(5)
    assert embedding.num_embeddings == 5
    assert torch.equal(embedding.weight, first)
    with pytest.raises(IndexError):
        embedding(torch.tensor([5]))


def test_learned_positional_embedding_crop_keeps_the_same_parameter():
    embedding = LearnedPositionalEmbedding(12, C)
    weight = embedding.weight
    embedding.crop(5)
    assert embedding.weight is weight


def test_learned_positional_embedding_crop_keeps_the_gradient_of_the_first_positions():
    torch.manual_seed(0)
    embedding = LearnedPositionalEmbedding(12, C)
    embedding(torch.arange(12)).pow(2).sum().backward()
    first = embedding.weight.grad[:5].clone()
    embedding.crop(5)
    assert torch.equal(embedding.weight.grad, first)
    embedding(torch.arange(5)).sum().backward()  # accumulates into the cropped gradient
    assert_close(embedding.weight.grad, first + 1)


@pytest.mark.parametrize("pos", [0, 1, 7, 63])
def test_sinusoidal_encoding_equals_the_formula(pos):
    table = SinusoidalPositionalEncoding(64, C)(torch.tensor([pos]))[0]  # (C,)
    for i in range(C // 2):
        angle = pos / 10000 ** (2 * i / C)
        assert table[2 * i].item() == pytest.approx(math.sin(angle), abs=1e-5)
        assert table[2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_sinusoidal_encoding_of_position_plus_k_is_a_fixed_linear_map_of_position(k):
    """PE[p + k] = M_k PE[p] for every p, with M_k a rotation of each (sin, cos) pair by k * w_i."""
    encoding = SinusoidalPositionalEncoding(64, C)
    frequencies = 10000 ** (-torch.arange(0, C, 2, dtype=torch.float64) / C)  # w_i, (C/2,)
    cos, sin = torch.cos(k * frequencies), torch.sin(k * frequencies)
    rotation = torch.zeros(C, C, dtype=torch.float64)  # block-diagonal, independent of p
    rotation[0::2, 0::2] = torch.diag(cos)  # sin(a + b) = sin a cos b + cos a sin b
    rotation[0::2, 1::2] = torch.diag(sin)
    rotation[1::2, 0::2] = torch.diag(-sin)  # cos(a + b) = cos a cos b - sin a sin b
    rotation[1::2, 1::2] = torch.diag(cos)
    p = torch.arange(0, 64 - k)
    mapped = encoding(p).double() @ rotation.T  # (P, C)
    assert_close(mapped, encoding(p + k).double(), rtol=0, atol=1e-5)


def test_sinusoidal_encoding_has_no_parameters_and_is_not_saved():
    encoding = SinusoidalPositionalEncoding(16, C)
    assert list(encoding.parameters()) == []
    assert encoding.state_dict() == {}


def test_sinusoidal_encoding_rejects_an_odd_width():
    with pytest.raises(ValueError, match="even"):
        SinusoidalPositionalEncoding(16, 7)


def test_sinusoidal_encoding_crop_keeps_the_first_positions():
    encoding = SinusoidalPositionalEncoding(16, C)
    first = encoding(torch.arange(4))
    encoding.crop(4)
    assert encoding.num_embeddings == 4
    assert torch.equal(encoding(torch.arange(4)), first)


def test_feed_forward_takes_the_exact_gelu_when_asked():
    torch.manual_seed(0)
    ff = FeedForward(C, gelu="none")
    x = 4 * torch.randn(2, 3, C)
    hidden = x @ ff.c_fc.weight.T + ff.c_fc.bias  # (B, T, 4C)
    erf_gelu = 0.5 * hidden * (1.0 + torch.erf(hidden / math.sqrt(2.0)))
    assert_close(ff(x), erf_gelu @ ff.c_proj.weight.T + ff.c_proj.bias, rtol=0, atol=1e-6)
