"""Min/max asymmetric n-bit quantization: initialisation from min/max, the formula, static and
learned clipping, int8 metadata, and the LSQ / straight-through gradients against their formulas."""
from __future__ import annotations

import math

import pytest
import torch

from speechforge.errors import ConfigError
from speechforge_plugins.quant.minmax_weight import MinMaxWeight


def naive_minmax(weight, scale, zero_point, bits, width):
    """q = clamp(round((w - z) / s), 0, 2^bits - 1), w_hat = s q + z, per (channel, block)."""
    out = torch.empty_like(weight)
    for o in range(weight.shape[0]):
        for b in range(weight.shape[1] // width):
            cols = slice(b * width, (b + 1) * width)
            s, z = scale[o, b], zero_point[o, b]
            q = torch.clamp(torch.round((weight[o, cols] - z) / s), 0, 2**bits - 1)
            out[o, cols] = s * q + z
    return out


def perturb(quantizer: MinMaxWeight, seed: int = 0) -> None:
    """Move scale and zero point off their min/max start, so weights fall inside and outside."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        quantizer.scale.mul_(0.6 + 0.2 * torch.rand(quantizer.scale.shape, generator=generator))
        quantizer.zero_point.add_(0.05 * torch.randn(quantizer.zero_point.shape, generator=generator))


@pytest.mark.parametrize("bits", [1, 2])
@pytest.mark.parametrize("block_size", [None, 4])
def test_initial_grid_spans_each_blocks_min_and_max(bits, block_size):
    weight = torch.randn(5, 12)
    quantizer = MinMaxWeight(weight, name="lin", bits=bits, block_size=block_size)
    width = block_size or 12
    blocks = weight.reshape(5, -1, width)
    torch.testing.assert_close(quantizer.zero_point.squeeze(-1), blocks.amin(-1))
    torch.testing.assert_close(quantizer.scale.squeeze(-1), (blocks.amax(-1) - blocks.amin(-1)) / (2**bits - 1))
    out = quantizer(weight).reshape(5, -1, width)
    torch.testing.assert_close(out.amin(-1), blocks.amin(-1))
    torch.testing.assert_close(out.amax(-1), blocks.amax(-1))
    assert len(torch.unique(out[0, 0])) <= 2**bits


@pytest.mark.parametrize("bits", [1, 2])
@pytest.mark.parametrize("block_size", [None, 4])
def test_matches_formula_after_learning_moved_the_grid(bits, block_size):
    weight = torch.randn(6, 12)
    quantizer = MinMaxWeight(weight, name="lin", bits=bits, block_size=block_size)
    perturb(quantizer)
    expected = naive_minmax(weight, quantizer.scale.squeeze(-1), quantizer.zero_point.squeeze(-1), bits, block_size or 12)
    torch.testing.assert_close(quantizer(weight), expected)


def test_int8_metadata_is_what_the_forward_computes_with():
    weight = torch.randn(6, 12)
    quantizer = MinMaxWeight(weight, name="lin", bits=2, block_size=4, scale_dtype="int8")
    perturb(quantizer)
    rounded = []
    for values in (quantizer.scale.squeeze(-1), quantizer.zero_point.squeeze(-1)):
        step = values.abs().max() / 127
        rounded.append(torch.round(values / step) * step)
    torch.testing.assert_close(quantizer(weight), naive_minmax(weight, *rounded, 2, 4))


def test_static_clip_shrinks_the_grid_about_its_centre():
    weight = torch.randn(4, 8)
    quantizer = MinMaxWeight(weight, name="lin", bits=2, clip=0.5)
    low, high = weight.amin(-1), weight.amax(-1)
    torch.testing.assert_close(quantizer.scale.reshape(4), 0.5 * (high - low) / 3)
    torch.testing.assert_close(quantizer.zero_point.reshape(4), (high + low) / 2 - 0.25 * (high - low))


def test_learned_clip_factor_scales_the_grid_about_its_centre_and_learns():
    weight = torch.randn(4, 8)
    learned = MinMaxWeight(weight, name="lin", bits=2, learn_clip=True)
    with torch.no_grad():
        learned.clip_factor.fill_(0.5)
    torch.testing.assert_close(learned(weight), MinMaxWeight(weight, name="lin", bits=2, clip=0.5)(weight))
    learned(weight).pow(2).sum().backward()
    assert learned.clip_factor.grad.abs().sum() > 0
    assert MinMaxWeight(weight, name="lin").clip_factor is None


@pytest.mark.parametrize("bits", [1, 2])
def test_straight_through_and_lsq_gradients_match_their_formulas(bits):
    weight = torch.randn(3, 8, requires_grad=True)
    quantizer = MinMaxWeight(weight, name="lin", bits=bits, block_size=4)
    perturb(quantizer, seed=1)
    upstream = torch.randn(3, 8)
    (quantizer(weight) * upstream).sum().backward()

    levels = 2**bits - 1
    s = quantizer.scale.detach().repeat_interleave(4, dim=1).reshape(3, 8)
    z = quantizer.zero_point.detach().repeat_interleave(4, dim=1).reshape(3, 8)
    v = (weight.detach() - z) / s
    below, above = v < 0, v > levels
    inside = ~(below | above)
    assert inside.any() and (below | above).any()
    torch.testing.assert_close(weight.grad, upstream * inside)

    d_scale = torch.where(inside, torch.round(v) - v, torch.where(above, float(levels), 0.0))
    d_zero_point = (~inside).float()
    factor = 1 / math.sqrt(4 * levels)
    torch.testing.assert_close(quantizer.scale.grad.squeeze(-1), factor * (upstream * d_scale).reshape(3, 2, 4).sum(-1))
    torch.testing.assert_close(quantizer.zero_point.grad.squeeze(-1), factor * (upstream * d_zero_point).reshape(3, 2, 4).sum(-1))


def test_stacked_expert_weights_quantize_each_expert_on_its_own():
    weights = torch.randn(2, 4, 8)  # (E, O, I)
    stacked = MinMaxWeight(weights, name="moe.w_1", bits=2, block_size=4)
    for expert in range(2):
        alone = MinMaxWeight(weights[expert], name="e", bits=2, block_size=4)
        torch.testing.assert_close(stacked(weights)[expert], alone(weights[expert]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bits": 3}, r"enc\.lin: minmax bits must be one of \(1, 2\), got 3"),
        ({"clip": 1.5}, r"enc\.lin: minmax clip must lie in \(0, 1\], got 1\.5"),
        ({"block_size": 5}, r"enc\.lin: block_size 5 does not divide the contraction dim 12"),
        ({"scale_dtype": "bf16"}, r"enc\.lin: scale_dtype must be one of"),
    ],
)
def test_bad_settings_name_the_layer(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        MinMaxWeight(torch.randn(4, 12), name="enc.lin", **kwargs)
