"""The MoE expert bank honours a parametrization of its stacked expert weights, a module
standing in for the whole layer, and a module standing in for one stacked weight (indexed
like it, as the quant plugin's packed bank), on every path: training, inference, and inference
after the CPU transform (which then leaves the layer unpacked)."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from speechforge.modules.inference_transform import optimize_for_cpu_inference
from speechforge.plugins import default_host
from speechforge_plugins.moe.moe_feed_forward import MoEFeedForward

INPUT_DIM = 20


def moe_encoder(dispatch: str) -> nn.Module:
    torch.manual_seed(0)
    config = {
        "type": "conformer", "d_model": 16, "heads": 2, "num_blocks": 1, "dropout": 0.0,
        "ffn": {"type": "moe", "num_experts": 4, "top_k": 2, "hidden": 16, "dropout": 0.0, "dispatch": dispatch},
        "encoder_block": {"type": "conformer", "conv_kernel": 3, "macaron": False},
    }  # fmt: skip
    return default_host().registry.build("encoder", config, "encoder", input_dim=INPUT_DIM)


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("dispatch,weight", [("grouped", "w_1"), ("padded", "w_2")])
def test_stacked_expert_weights_swap_and_parametrization_take_effect(
    dispatch, weight, batch, assert_layer_changes_take_effect
):
    torch.manual_seed(1)
    x = torch.randn(batch, 40, INPUT_DIM)
    lengths = torch.full((batch,), 40)

    def run(model: nn.Module) -> torch.Tensor:
        torch.manual_seed(2)
        return model(x, lengths)[0]

    assert_layer_changes_take_effect(moe_encoder(dispatch), "blocks.0.feed_forward", run, weight=weight)


def test_transform_packs_only_a_plain_moe_layer():
    class Subclassed(MoEFeedForward):
        pass

    plain = MoEFeedForward(d_model=16, num_experts=4, hidden=16)
    subclassed = Subclassed(d_model=16, num_experts=4, hidden=16)
    assert optimize_for_cpu_inference(plain)._packer is not None
    assert optimize_for_cpu_inference(subclassed)._packer is None
    assert plain._packer is None  # the transform worked on a copy


class _IndexedStack(nn.Module):
    """A stand-in for a stacked (E, O, I) weight that gives one expert's (O, I) at a time."""

    def __init__(self, stack: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("stack", stack.detach().clone())

    def __getitem__(self, e: int) -> torch.Tensor:
        return self.stack[e]


@pytest.mark.parametrize("dispatch", ["grouped", "padded"])
def test_a_module_indexed_like_a_stacked_weight_stands_in_for_it_expert_by_expert(dispatch):
    layer = MoEFeedForward(d_model=16, num_experts=4, top_k=2, hidden=16, dropout=0.0, dispatch=dispatch).eval()
    stood_in = copy.deepcopy(layer)
    doubled = 2 * stood_in.w_2.detach()
    del stood_in.w_2
    stood_in.w_2 = _IndexedStack(doubled)
    with torch.no_grad():
        layer.w_2.copy_(doubled)
    x = torch.randn(2, 7, 16)
    with torch.no_grad():
        expected = layer(x)
        torch.testing.assert_close(stood_in(x), expected)  # padded too: it runs expert by expert
        transformed = optimize_for_cpu_inference(stood_in)
        assert transformed._packer is None  # oneDNN copies read the whole stack
        torch.testing.assert_close(transformed(x), expected)
