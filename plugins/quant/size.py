"""Model size in bits, the arithmetic of the paper's Table 2.

A float weight costs 32 bits per value. A quantized one costs ``bits`` per value plus its
metadata: ``metadata_per_block`` values (the scale; scale and zero point) per block, each 32 bits
as float32 or 8 bits as int8, and with int8 one float32 step per metadata tensor. Packing
padding is not counted (none when the block width is a multiple of 8 / bits).
"""
from __future__ import annotations

import math

from speechforge_plugins.quant.blocks import block_width
from speechforge_plugins.quant.metadata_codec import check_metadata_dtype

FLOAT_BITS = 32
METADATA_BITS = {"float32": 32, "int8": 8}


def float_bits(shape: tuple[int, ...]) -> int:
    """Bits of a float32 tensor of ``shape``."""
    return FLOAT_BITS * math.prod(shape)


def quantized_bits(
    shape: tuple[int, ...],
    *,
    bits: int,
    block_size: int | None,
    metadata_per_block: int,
    metadata_dtype: str,
    name: str = "weight",
) -> int:
    """Bits of a weight (..., O, I) quantized to ``bits`` in blocks of ``block_size`` along I
    (None: per channel), with its metadata stored as ``metadata_dtype``."""
    check_metadata_dtype(metadata_dtype, name)
    values = math.prod(shape)
    blocks = values // block_width(tuple(shape), block_size, name)
    metadata = metadata_per_block * blocks * METADATA_BITS[metadata_dtype]
    steps = metadata_per_block * FLOAT_BITS if metadata_dtype == "int8" else 0
    return bits * values + metadata + steps
