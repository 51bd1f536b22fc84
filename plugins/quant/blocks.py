"""Sub-channel blocks: the contraction (last) dim of a weight split into equal blocks.

A weight laid out like ``nn.Linear.weight``, (O, I), or a stack of them such as MoE experts,
(E, O, I), contracts over its last dim. Splitting it into blocks of ``block_size`` gives every
output channel ``I // block_size`` sub-channels with their own quantization metadata (the
paper's Figure 2: (2, 6) with blocks of 3 becomes (2, 2, 3), i.e. 4 sub-channels of 3).
``block_size=None`` is plain per-channel quantization: one block spanning the whole dim.
"""
from __future__ import annotations

from torch import Tensor

from speechforge.errors import ConfigError


def block_width(shape: tuple[int, ...], block_size: int | None, name: str) -> int:
    """The block width for a weight of ``shape``; raises ConfigError naming the layer ``name``
    when ``block_size`` does not divide the contraction dim (the last one)."""
    if len(shape) < 2:
        raise ConfigError(f"{name}: a quantized weight needs (..., O, I) dims, got shape {tuple(shape)}")
    width = shape[-1] if block_size is None else block_size
    if width < 1 or shape[-1] % width:
        raise ConfigError(
            f"{name}: block_size {block_size} does not divide the contraction dim {shape[-1]} "
            f"of weight shape {tuple(shape)}"
        )
    return width


def split_blocks(weight: Tensor, width: int) -> Tensor:
    """(..., O, I) -> (..., O, I // width, width): a view, no copy."""
    return weight.unflatten(-1, (weight.shape[-1] // width, width))


def merge_blocks(blocks: Tensor) -> Tensor:
    """(..., O, NB, W) -> (..., O, NB * W), the inverse of :func:`split_blocks`."""
    return blocks.flatten(-2)
