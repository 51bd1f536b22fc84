"""The MoE expert bank honours a parametrization of its stacked expert weights, and a module
standing in for the whole layer, on every path: training, inference, and inference after the
CPU transform (which then leaves the layer unpacked)."""
from __future__ import annotations

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
