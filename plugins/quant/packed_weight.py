"""The packed form of one quantized weight, as a fake quantizer's ``pack`` returns it."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class PackedWeight:
    """A weight (..., O, I) in blocks of ``width`` along I, NB = I // width blocks per channel.

    A block's value is ``scale * (2 * c - 1)`` for a binary weight (codes c in {0, 1} are the
    signs, ``zero_point is None``) and ``scale * c + zero_point`` for an affine one (levels c in
    [0, 2**bits - 1]; the zero point is the value of level 0, in weight units).

    Attributes:
        shape: the float weight's shape (..., O, I).
        bits: bits per code, 1 or 2.
        width: the block width (I for per-channel quantization).
        codes: (..., O, NB, ceil(width * bits / 8)) uint8, each block packed on its own.
        scale: (..., O, NB) float32, or int8 codes of double quantization.
        scale_step: float32 0-dim step of the int8 ``scale`` codes; None for float32.
        zero_point: (..., O, NB) like ``scale``; None for binary weights.
        zero_point_step: the step of int8 zero points; None otherwise.
    """

    shape: tuple[int, ...]
    bits: int
    width: int
    codes: Tensor
    scale: Tensor
    scale_step: Tensor | None = None
    zero_point: Tensor | None = None
    zero_point_step: Tensor | None = None
