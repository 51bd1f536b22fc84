"""Sub-channel blocks: the paper's Figure 2 reshape, round trips, and the error naming the layer."""
from __future__ import annotations

import pytest
import torch

from speechforge.errors import ConfigError
from speechforge_plugins.quant.blocks import block_width, merge_blocks, split_blocks


def test_figure_2_split_makes_sub_channels_of_consecutive_inputs():
    weight = torch.arange(12.0).reshape(2, 6)  # (O=2, I=6), blocks of 3
    blocks = split_blocks(weight, block_width(weight.shape, 3, "enc.ffn"))
    assert blocks.shape == (2, 2, 3)
    assert blocks.reshape(4, 3).tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]


@pytest.mark.parametrize("shape", [(5, 12), (3, 5, 12)])
@pytest.mark.parametrize("block_size", [None, 4, 12])
def test_split_merge_round_trip(shape, block_size):
    weight = torch.randn(shape)
    width = block_width(shape, block_size, "w")
    blocks = split_blocks(weight, width)
    assert blocks.shape == (*shape[:-1], shape[-1] // width, width)
    assert torch.equal(merge_blocks(blocks), weight)


def test_block_not_dividing_the_contraction_dim_names_the_layer():
    with pytest.raises(ConfigError, match=r"encoder\.blocks\.3\.ffn\.w_1: block_size 64 does not divide the contraction dim 100"):
        block_width((256, 100), 64, "encoder.blocks.3.ffn.w_1")


def test_a_vector_is_not_a_weight_matrix():
    with pytest.raises(ConfigError, match=r"bias: .*got shape \(8,\)"):
        block_width((8,), None, "bias")
