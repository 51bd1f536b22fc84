"""Table 2 arithmetic for one 1536 x 6144 Conformer FFN layer, and the packed layer's bytes."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from speechforge_plugins.quant.absmean_binary_weight import AbsmeanBinaryWeight
from speechforge_plugins.quant.minmax_weight import MinMaxWeight
from speechforge_plugins.quant.packed_linear import PackedLinear
from speechforge_plugins.quant.size import float_bits, quantized_bits

SHAPE = (6144, 1536)  # nn.Linear(1536, 6144).weight: O = 6144 channels contracting over 1536
VALUES = 6144 * 1536


def reduction(**kwargs) -> float:
    return float_bits(SHAPE) / quantized_bits(SHAPE, **kwargs)


def test_exp5_binary_with_64_wide_blocks_matches_the_papers_layer_arithmetic():
    f32 = quantized_bits(SHAPE, bits=1, block_size=64, metadata_per_block=1, metadata_dtype="float32")
    int8 = quantized_bits(SHAPE, bits=1, block_size=64, metadata_per_block=1, metadata_dtype="int8")
    assert f32 == VALUES + VALUES // 64 * 32  # 1.5 bits per weight
    assert int8 == VALUES + VALUES // 64 * 8 + 32  # 1.125 bits per weight + one f32 step
    assert float_bits(SHAPE) == 32 * VALUES
    assert round(float_bits(SHAPE) / f32, 1) == 21.3  # the "21.3x / 28.4x for the layers"
    assert round(float_bits(SHAPE) / int8, 1) == 28.4


def test_per_channel_metadata_is_nearly_free_and_blocks_cost_what_they_store():
    exp4 = reduction(bits=1, block_size=None, metadata_per_block=1, metadata_dtype="float32")
    exp1 = reduction(bits=2, block_size=None, metadata_per_block=2, metadata_dtype="float32")
    exp2_f32 = reduction(bits=2, block_size=64, metadata_per_block=2, metadata_dtype="float32")
    exp2_int8 = reduction(bits=2, block_size=64, metadata_per_block=2, metadata_dtype="int8")
    assert exp4 == pytest.approx(32 / (1 + 32 / 1536))
    assert exp1 == pytest.approx(32 / (2 + 64 / 1536))
    assert exp2_f32 == pytest.approx(32 / 3)  # 2 bits + 2 x 32 / 64
    assert exp2_int8 == pytest.approx(32 * VALUES / (2.25 * VALUES + 2 * 32))  # 2 + 2 x 8 / 64 bits, 2 steps
    assert exp4 > exp1 > exp2_int8 > exp2_f32  # Table 2's order: metadata is what sub-channels pay


@pytest.mark.parametrize(
    ("make", "metadata_per_block"),
    [
        (lambda w: AbsmeanBinaryWeight(w, name="lin", block_size=64, scale_dtype="int8"), 1),
        (lambda w: MinMaxWeight(w, name="lin", bits=2, block_size=64), 2),
    ],
)
def test_packed_layer_holds_exactly_the_computed_bits(make, metadata_per_block):
    linear = nn.Linear(256, 32, bias=False)
    quantizer = make(linear.weight)
    parametrize.register_parametrization(linear, "weight", quantizer)
    packed = PackedLinear.from_parametrized(linear)
    stored_bits = 8 * sum(buffer.numel() * buffer.element_size() for buffer in packed.buffers())
    assert stored_bits == quantized_bits(
        (32, 256),
        bits=quantizer.bits,
        block_size=64,
        metadata_per_block=metadata_per_block,
        metadata_dtype=quantizer.scale_dtype,
    )
    assert quantizer.metadata_per_block == metadata_per_block
    assert quantizer.size_bits(quantizer.scale_dtype) == stored_bits
