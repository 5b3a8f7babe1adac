"""gptlab.viz.quantization: the round trips against their error bounds, per tensor against per
channel on a matrix with one large row, and the pooled errors of a model's projections."""

from __future__ import annotations

import torch

from gptlab.config import GPTConfig
from gptlab.models.gpt import GPT
from gptlab.viz.adapters import PROJECTIONS
from gptlab.viz.figure import png_bytes
from gptlab.viz.quantization import (
    SCHEMES,
    int4_groupwise,
    int8_per_channel,
    int8_per_tensor,
    plot_quantization_error,
    relative_errors,
    relative_mse,
)

EPS = 1e-6  # float32 rounding in w / scale · scale


def one_large_row(seed: int = 0) -> torch.Tensor:
    """(8, 64) Gaussian weights whose row 0 is 100 times the others: an outlier channel."""
    weight = torch.randn(8, 64, generator=torch.Generator().manual_seed(seed))
    weight[0] *= 100
    return weight


def small_gpt(n_layer: int = 2) -> GPT:
    """n_embd 128, so that a group of 128 divides every projection's input width."""
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=32, context_length=16, n_layer=n_layer, n_head=2, n_embd=128))


def test_int8_per_tensor_moves_a_weight_by_at_most_half_of_the_tensors_step():
    weight = one_large_row()
    step = weight.abs().max() / 127
    assert (weight - int8_per_tensor(weight)).abs().max() <= step / 2 * (1 + EPS)


def test_int8_per_channel_moves_a_weight_by_at_most_half_of_its_rows_step():
    weight = one_large_row()
    step = weight.abs().amax(dim=1, keepdim=True) / 127  # (out, 1)
    assert ((weight - int8_per_channel(weight)).abs() <= step / 2 * (1 + EPS)).all()


def test_int4_moves_a_weight_by_at_most_half_of_its_groups_step():
    weight = one_large_row()
    groups = weight.reshape(8, 64 // 16, 16)  # (out, G, 16)
    low = groups.amin(dim=-1, keepdim=True).clamp(max=0)  # 0 stays inside the range
    high = groups.amax(dim=-1, keepdim=True).clamp(min=0)
    step = (high - low) / 15  # (out, G, 1)
    error = (weight - int4_groupwise(weight, 16)).reshape(groups.shape).abs()
    assert (error <= step / 2 * (1 + EPS)).all()


def test_per_channel_spares_the_small_rows_that_one_large_row_spoils_per_tensor():
    weight = one_large_row()
    small = slice(1, None)  # the rows of ordinary size
    per_tensor = (weight - int8_per_tensor(weight))[small].pow(2).mean()
    per_channel = (weight - int8_per_channel(weight))[small].pow(2).mean()
    # Per tensor their step is 100 times too coarse, and the squared error grows as its square.
    assert per_tensor > 1000 * per_channel
    # The large row has its own scale either way, so it is quantized alike.
    torch.testing.assert_close(int8_per_tensor(weight)[0], int8_per_channel(weight)[0])


def test_smaller_int4_groups_add_less_noise_on_a_matrix_with_one_large_row():
    weight = one_large_row()
    noise = {size: (weight - int4_groupwise(weight, size)).pow(2).mean() for size in (64, 8)}
    assert noise[8] < noise[64]


def test_relative_errors_pool_every_weight_of_every_block_by_kind():
    model = small_gpt(n_layer=2)
    errors = relative_errors(model)
    assert set(errors) == set(PROJECTIONS)
    c_fc = model.h[0].mlp.c_fc.weight  # (512, 128)
    for scheme in SCHEMES:
        assert errors["mlp c_fc"][scheme].shape == (2 * c_fc.numel(),)
        assert (errors["mlp c_fc"][scheme] >= 0).all()


def test_relative_mse_is_the_noise_energy_over_the_weight_energy():
    model = small_gpt(n_layer=1)
    weight = model.h[0].attn.c_proj.weight.detach()
    expected = (weight - int8_per_channel(weight)).pow(2).sum() / weight.pow(2).sum()
    measured = relative_mse(relative_errors(model)["attn c_proj"]["int8, per channel"])
    assert abs(measured - expected.item()) <= 1e-4 * expected.item()


def test_the_quantization_error_figure_draws():
    figure = plot_quantization_error(relative_errors(small_gpt(n_layer=1)), "test")
    assert png_bytes(figure).startswith(b"\x89PNG")
