"""Packing of 1- and 2-bit integer codes into bytes: 8 codes per uint8 for 1 bit, 4 for 2 bits.

Codes are packed along the last dim, little end first: code ``k`` of a byte sits at bits
``k * bits ... k * bits + bits - 1``. A last dim that does not fill whole bytes is padded with
zero codes; :func:`unpack_bits` takes the original length back.
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

PACKABLE_BITS = (1, 2)


def codes_per_byte(bits: int) -> int:
    if bits not in PACKABLE_BITS:
        raise ValueError(f"bits must be one of {PACKABLE_BITS}, got {bits}")
    return 8 // bits


def packed_length(length: int, bits: int) -> int:
    """Bytes holding ``length`` codes of ``bits`` each."""
    per_byte = codes_per_byte(bits)
    return -(-length // per_byte)


def _shifts(bits: int, device: torch.device) -> Tensor:
    """(8 // bits,) the bit offset of each code in a byte."""
    return torch.arange(codes_per_byte(bits), dtype=torch.uint8, device=device) * bits


def pack_bits(codes: Tensor, bits: int) -> Tensor:
    """(..., L) integer codes in [0, 2**bits) -> (..., ceil(L / (8 // bits))) uint8."""
    per_byte = codes_per_byte(bits)
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= 1 << bits):
        raise ValueError(f"{bits}-bit codes must lie in [0, {(1 << bits) - 1}], got "
                         f"[{int(codes.min())}, {int(codes.max())}]")
    length = codes.shape[-1]
    padded = F.pad(codes.to(torch.uint8), (0, packed_length(length, bits) * per_byte - length))
    grouped = padded.unflatten(-1, (-1, per_byte))  # (..., bytes, per_byte)
    return (grouped << _shifts(bits, codes.device)).sum(-1, dtype=torch.uint8)


@lru_cache
def _byte_table(bits: int, device: torch.device) -> Tensor:
    """(256, 8 // bits) uint8: the codes held by each byte value (a lookup is one gather,
    about twice as fast as shifting and masking every byte)."""
    mask = (1 << bits) - 1
    return (torch.arange(256, dtype=torch.uint8, device=device).unsqueeze(-1) >> _shifts(bits, device)) & mask


def unpack_bits(packed: Tensor, bits: int, length: int) -> Tensor:
    """(..., B) uint8 -> (..., length) uint8 codes; the inverse of :func:`pack_bits`."""
    codes = _byte_table(bits, packed.device)[packed.long()]  # (..., B, 8 // bits)
    return codes.flatten(-2)[..., :length]
