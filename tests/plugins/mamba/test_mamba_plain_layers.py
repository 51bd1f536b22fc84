"""Every layer of the Mamba block is a plain torch layer called as a module: a module swap and
a parametrization of each take effect in training, inference and after the CPU transform."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from speechforge.plugins import default_host

INPUT_DIM = 20


def mamba_encoder() -> nn.Module:
    torch.manual_seed(0)
    config = {
        "type": "conformer", "d_model": 16, "num_blocks": 1, "dropout": 0.0,
        "ffn": {"type": "dense", "hidden": 32, "dropout": 0.0},
        "encoder_block": {"type": "mamba", "d_state": 4, "use_ffn": True, "bidirectional": True},
    }  # fmt: skip
    encoder = default_host().registry.build("encoder", config, "encoder", input_dim=INPUT_DIM)
    with torch.no_grad():  # off the initialisation, where dt is too small for x_proj to show
        for parameter in encoder.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return encoder


MAMBA_LAYERS = [
    "mamba.in_proj", "mamba.conv1d", "mamba.x_proj", "mamba.dt_proj", "mamba.out_proj", "mamba_backward.conv1d",
    "feed_forward.w_1",
]  # fmt: skip


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("layer", MAMBA_LAYERS)
def test_swap_and_parametrization_of_every_mamba_layer_take_effect(layer, batch, assert_layer_changes_take_effect):
    torch.manual_seed(1)
    x = torch.randn(batch, 40, INPUT_DIM)
    lengths = torch.full((batch,), 40)
    lengths[-1] = 29

    def run(model: nn.Module) -> torch.Tensor:
        torch.manual_seed(2)  # the same dropout masks on every call
        return model(x, lengths)[0]

    assert_layer_changes_take_effect(mamba_encoder(), f"blocks.0.{layer}", run)
