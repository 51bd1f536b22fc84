"""``local_mha``: equal to ``mha`` under the banded mask (outputs and gradients, padding and
full masks, blocks that do and do not divide the length), the same state-dict keys, memory
linear in the length, and no streaming."""
from __future__ import annotations

import pytest
import torch

from speechforge.errors import ConfigError
from speechforge.modules.local_multi_head_attention import LocalMultiHeadAttention
from speechforge.modules.multi_head_attention import MultiHeadAttention

T = 11


def band(left: int, right: int) -> torch.Tensor:
    distance = torch.arange(T).view(1, T) - torch.arange(T).view(T, 1)  # key - query
    return (distance >= -left) & (distance <= right)  # (T, T)


@pytest.mark.parametrize("left,right,block", [(3, 2, 0), (2, 0, 3), (0, 4, 2), (5, 5, 4), (1, 1, 16)])
@pytest.mark.parametrize("mask_kind", ["padding", "full", "none"])
def test_equals_masked_full_attention(left, right, block, mask_kind):
    local = LocalMultiHeadAttention(d_model=8, heads=2, left_context=left, right_context=right, block_size=block)
    reference = MultiHeadAttention(d_model=8, heads=2, use_sdpa=False)
    reference.load_state_dict(local.state_dict())
    valid = torch.arange(T).view(1, T) < torch.tensor([[T], [7]])  # (B, T)
    chunk = (torch.arange(T).view(T, 1) // 4 >= torch.arange(T).view(1, T) // 4)  # a causal chunk mask
    mask = {"padding": valid.unsqueeze(1), "full": valid.unsqueeze(1) & chunk, "none": None}[mask_kind]
    full_mask = band(left, right) & (mask if mask is not None else True)
    x = torch.randn(2, T, 8, requires_grad=True)
    out, cache = local(x, x, x, mask)
    expected, _ = reference(x, x, x, full_mask.expand(2, T, T))
    torch.testing.assert_close(out, expected)
    assert cache is None
    grad = torch.randn_like(out)
    (got,) = torch.autograd.grad(out, x, grad)
    (want,) = torch.autograd.grad(expected, x, grad)
    torch.testing.assert_close(got, want)


def test_saved_activations_grow_linearly_with_length():
    attention = LocalMultiHeadAttention(d_model=8, heads=2, left_context=4, right_context=4)

    def largest_saved(frames: int) -> int:
        sizes: list[int] = []
        x = torch.randn(1, frames, 8, requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t, lambda t: t):
            attention(x, x, x, None)
        return max(sizes)

    assert largest_saved(512) <= 2.1 * largest_saved(256)


def test_cannot_stream():
    attention = LocalMultiHeadAttention(d_model=8, heads=2)
    with pytest.raises(ConfigError, match="local_mha keeps no streaming cache"):
        attention.initial_cache(1, torch.device("cpu"), torch.float32)
