"""Masks against naive loops."""
from __future__ import annotations

import pytest
import torch

from speechforge.modules.mask import chunk_attention_mask, encoder_attention_mask, padding_mask


@pytest.mark.parametrize("size,chunk,left", [(10, 3, -1), (10, 3, 1), (7, 1, 0), (8, 8, -1), (9, 4, 2)])
def test_chunk_mask_matches_naive(size, chunk, left):
    expected = torch.zeros(size, size, dtype=torch.bool)
    for i in range(size):
        first = 0 if left < 0 else max(0, (i // chunk - left) * chunk)
        last = min(size, (i // chunk + 1) * chunk)
        expected[i, first:last] = True
    assert torch.equal(chunk_attention_mask(size, chunk, left), expected)


def test_chunk_size_must_be_positive():
    with pytest.raises(ValueError, match="chunk_size must be positive, got 0"):
        chunk_attention_mask(4, 0)


def test_padding_mask():
    assert padding_mask(torch.tensor([3, 1])).tolist() == [[True, True, True], [True, False, False]]
    assert padding_mask(torch.tensor([2]), 4).tolist() == [[True, True, False, False]]


def test_encoder_mask_combines_padding_and_chunks():
    pad = padding_mask(torch.tensor([4, 2]), 4).unsqueeze(1)
    mask = encoder_attention_mask(pad, chunk_size=2)
    assert mask.shape == (2, 4, 4)
    assert not mask[1, :, 2:].any()
    assert mask[0, 0].tolist() == [True, True, False, False]
    assert encoder_attention_mask(pad) is pad
