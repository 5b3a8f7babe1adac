"""gptlab.viz.adapters: the spectrum of a fine-tune's weight update, on updates of known rank."""

from __future__ import annotations

import copy

import pytest
import torch

from gptlab.config import GPTConfig
from gptlab.errors import ConfigError
from gptlab.models.gpt import GPT
from gptlab.viz.adapters import (
    PROJECTIONS,
    energy_share,
    plot_update_spectrum,
    projection_shapes,
    update_spectrum,
)
from gptlab.viz.figure import png_bytes


def tiny_gpt(n_layer: int = 2) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=32, context_length=16, n_layer=n_layer, n_head=2, n_embd=16))


def add_rank(weight: torch.Tensor, rank: int, seed: int) -> None:
    """weight += a product of two random thin matrices: an update of exactly `rank`."""
    generator = torch.Generator().manual_seed(seed)
    out, inp = weight.shape
    B = torch.randn(out, rank, generator=generator)
    A = torch.randn(rank, inp, generator=generator)
    with torch.no_grad():
        weight += B @ A


def test_an_update_of_rank_3_has_3_nonzero_singular_values_and_all_its_energy_at_r_3():
    base = tiny_gpt()
    tuned = copy.deepcopy(base)
    for block in tuned.h:
        for linear in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj):
            add_rank(linear.weight, 3, seed=len(linear.weight))
    spectrum = update_spectrum(base, tuned)
    assert set(spectrum) == set(PROJECTIONS)
    for kind, values in spectrum.items():
        assert values.shape == (2, 16), kind  # 2 blocks, min(out, in) = 16 values each
        # the weights are float32: "zero" is float32's rounding, a millionth of the largest value
        assert (values[:, 2] > 1e-3 * values[:, 0]).all(), kind
        assert (values[:, 3:] < 1e-6 * values[:, :1]).all(), kind
        shares = energy_share(values)
        torch.testing.assert_close(shares[:, 2], torch.ones(2, dtype=torch.float64))
        assert (shares[:, 1] < 1).all()


def test_energy_share_is_the_cumulative_share_of_squared_singular_values():
    share = energy_share(torch.tensor([3.0, 2.0, 1.0]))
    torch.testing.assert_close(share, torch.tensor([9 / 14, 13 / 14, 1.0], dtype=torch.float64))


def test_an_unchanged_model_has_a_zero_update_without_dividing_by_zero():
    base = tiny_gpt(n_layer=1)
    spectrum = update_spectrum(base, copy.deepcopy(base))
    for values in spectrum.values():
        assert not values.any()
        assert not energy_share(values).isnan().any()


def test_models_of_different_depth_are_refused():
    with pytest.raises(ConfigError, match="differ"):
        update_spectrum(tiny_gpt(n_layer=1), tiny_gpt(n_layer=2))


def test_the_spectrum_figure_draws():
    base = tiny_gpt()
    tuned = copy.deepcopy(base)
    add_rank(tuned.h[0].mlp.c_fc.weight, 2, seed=1)
    figure = plot_update_spectrum(
        update_spectrum(base, tuned), projection_shapes(base), "test", ranks=(2, 4)
    )
    assert png_bytes(figure).startswith(b"\x89PNG")
