"""1-bit codes 8 per byte, 2-bit codes 4 per byte: layout and exact round trips."""
from __future__ import annotations

import pytest
import torch

from speechforge_plugins.quant.bit_packing import pack_bits, packed_length, unpack_bits


def naive_pack(codes: list[int], bits: int) -> list[int]:
    per_byte = 8 // bits
    codes = codes + [0] * (-len(codes) % per_byte)
    return [sum(codes[i + k] << (k * bits) for k in range(per_byte)) for i in range(0, len(codes), per_byte)]


@pytest.mark.parametrize("bits", [1, 2])
@pytest.mark.parametrize("length", [1, 7, 8, 64, 67])
def test_pack_matches_naive_layout_and_round_trips(bits, length):
    codes = torch.randint(0, 1 << bits, (3, 2, length), dtype=torch.uint8)
    packed = pack_bits(codes, bits)
    assert packed.dtype == torch.uint8
    assert packed.shape == (3, 2, packed_length(length, bits)) == (3, 2, -(-length * bits // 8))
    assert packed[1, 0].tolist() == naive_pack(codes[1, 0].tolist(), bits)
    assert torch.equal(unpack_bits(packed, bits, length), codes)


def test_eight_signs_fill_one_byte():
    assert pack_bits(torch.tensor([1, 0, 0, 0, 0, 0, 0, 1]), 1).tolist() == [0b10000001]
    assert pack_bits(torch.tensor([3, 0, 1, 2]), 2).tolist() == [0b10010011]


def test_out_of_range_codes_and_bits_are_refused():
    with pytest.raises(ValueError, match=r"2-bit codes must lie in \[0, 3\], got \[0, 4\]"):
        pack_bits(torch.tensor([0, 4]), 2)
    with pytest.raises(ValueError, match=r"bits must be one of \(1, 2\), got 4"):
        pack_bits(torch.tensor([0, 1]), 4)
    with pytest.raises(ValueError, match=r"bits must be one of \(1, 2\), got 3"):
        unpack_bits(torch.tensor([7], dtype=torch.uint8), 3, 2)
