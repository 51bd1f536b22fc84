"""Absmean binarization against its formula written out block by block: per-channel (Exp4),
sub-channel blocks (Exp5), centralisation, int8 scales, zeros, the straight-through Jacobian,
and use as a parametrization of nn.Linear weights and stacked MoE expert weights."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from speechforge.errors import ConfigError
from speechforge.registry import build_component
from speechforge_plugins.quant.absmean_binary_weight import AbsmeanBinaryWeight


def naive_absmean(weight: torch.Tensor, width: int, centralize: bool, int8: bool) -> torch.Tensor:
    """Figure 1 per (channel, block), then Figure 2's dequantization, with plain loops."""
    rows, cols = weight.shape
    signs, scales = torch.empty_like(weight), torch.empty(rows, cols // width)
    for o in range(rows):
        for b in range(cols // width):
            x = weight[o, b * width : (b + 1) * width].clone()
            if centralize:
                x = x - x.mean()
            x[x == 0] = torch.finfo(x.dtype).tiny
            scales[o, b] = x.abs().mean()
            signs[o, b * width : (b + 1) * width] = torch.where(x > 0, 1.0, -1.0)
    if int8:
        step = scales.abs().max() / 127
        scales = torch.round(scales / step) * step
    return signs * scales.repeat_interleave(width, dim=1)


@pytest.mark.parametrize("block_size", [None, 4])
@pytest.mark.parametrize("centralize", [False, True])
@pytest.mark.parametrize("scale_dtype", ["float32", "int8"])
def test_matches_formula(block_size, centralize, scale_dtype):
    weight = torch.randn(6, 12)
    quantizer = AbsmeanBinaryWeight(
        weight, name="lin", block_size=block_size, centralize=centralize, scale_dtype=scale_dtype
    )
    expected = naive_absmean(weight, block_size or 12, centralize, scale_dtype == "int8")
    torch.testing.assert_close(quantizer(weight), expected)


def test_zeros_binarize_to_plus_scale():
    weight = torch.tensor([[0.0, -2.0, 0.0, 4.0], [0.0, 0.0, 0.0, 0.0]])
    out = AbsmeanBinaryWeight(weight, name="lin", block_size=None)(weight)
    assert out[0].tolist() == [1.5, -1.5, 1.5, 1.5]
    assert (out[1] > 0).all()


def test_straight_through_jacobian_is_scale_plus_scale_gradient():
    weight = torch.randn(2, 6)
    quantizer = AbsmeanBinaryWeight(weight, name="lin", block_size=3)
    jacobian = torch.autograd.functional.jacobian(quantizer, weight)  # (2, 6, 2, 6)
    expected = torch.zeros(2, 6, 2, 6)
    for o in range(2):
        for b in range(2):
            cols = slice(3 * b, 3 * b + 3)
            x = weight[o, cols]
            expected[o, cols, o, cols] = x.abs().mean() * torch.eye(3) + torch.outer(x.sign(), x.sign()) / 3
    torch.testing.assert_close(jacobian, expected)


def test_parametrized_linear_computes_with_binary_weight_and_trains_the_original():
    linear = nn.Linear(8, 3)
    original = linear.weight.detach().clone()
    parametrize.register_parametrization(linear, "weight", AbsmeanBinaryWeight(linear.weight, name="lin", block_size=4))
    x = torch.randn(5, 8)
    expected = F.linear(x, naive_absmean(original, 4, False, False), linear.bias)
    out = linear(x)
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    assert linear.parametrizations.weight.original.grad is not None
    assert linear.parametrizations.weight.original.grad.abs().sum() > 0


def test_stacked_expert_weights_quantize_each_expert_on_its_own():
    weights = torch.randn(3, 6, 8)  # (E, O, I)
    stacked = AbsmeanBinaryWeight(weights, name="moe.w_1", block_size=4, scale_dtype="float32")(weights)
    for expert in range(3):
        torch.testing.assert_close(stacked[expert], naive_absmean(weights[expert], 4, False, False))


def test_moe_layer_with_binarized_expert_banks_equals_dequantized_copy():
    torch.manual_seed(0)
    config = {"type": "moe", "num_experts": 4, "top_k": 2, "hidden": 16, "dropout": 0.0}
    moe = build_component("ffn", config, "ffn", d_model=8)
    reference = build_component("ffn", config, "ffn", d_model=8)
    reference.load_state_dict(moe.state_dict())
    for bank in ("w_1", "w_2"):
        quantizer = AbsmeanBinaryWeight(getattr(moe, bank), name=f"ffn.{bank}", block_size=8)
        parametrize.register_parametrization(moe, bank, quantizer)
        with torch.no_grad():
            getattr(reference, bank).copy_(getattr(moe, bank))
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(moe(x), reference(x))


def test_block_not_dividing_names_the_layer():
    with pytest.raises(ConfigError, match=r"encoder\.blocks\.0\.ffn1\.w_1: block_size 64 does not divide the contraction dim 80"):
        AbsmeanBinaryWeight(torch.empty(256, 80), name="encoder.blocks.0.ffn1.w_1")
