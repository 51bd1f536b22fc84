"""Prune ranges and the gathered joiner inputs equal the real k2 1.23.4's; the ranges keep a
complete path (monotone starts from 0, no skipped symbol, last symbols on the last frame)."""
from __future__ import annotations

import pytest
import torch

from speechforge_plugins.rnnt.prune import adjust_lower_bounds, gather_pruned, prune_ranges


def test_ranges_equal_k2(k2_case: dict) -> None:
    ranges = prune_ranges(k2_case["px_grad"], k2_case["py_grad"], k2_case["boundary"], k2_case["s_range"])
    assert torch.equal(ranges, k2_case["ranges"])


def test_gathered_inputs_equal_k2(k2_case: dict) -> None:
    am_pruned, lm_pruned = gather_pruned(k2_case["am"], k2_case["lm"], k2_case["ranges"])
    torch.testing.assert_close(am_pruned + lm_pruned, k2_case["logits"], rtol=0, atol=0)


@pytest.mark.parametrize("max_step", [1, 2, 3, 5])
def test_adjusted_starts_keep_a_path(max_step: int) -> None:
    g = torch.Generator().manual_seed(max_step)
    s_begin = torch.randint(0, 12, (6, 15), generator=g)  # argmax positions
    out = adjust_lower_bounds(s_begin, max_step)
    steps = out[:, 1:] - out[:, :-1]
    assert bool((out >= 0).all()) and bool((steps >= 0).all()) and bool((steps <= max(max_step - 1, 0)).all())
    assert bool((out[:, 0] == 0).all())


def test_ranges_end_on_the_last_symbols() -> None:
    g = torch.Generator().manual_seed(0)
    B, S, T, s_range = 2, 5, 9, 3
    boundary = torch.tensor([[0, 0, 5, 9], [0, 0, 3, 6]])
    ranges = prune_ranges(torch.rand(B, S, T + 1, generator=g), torch.rand(B, S + 1, T, generator=g), boundary, s_range)
    assert ranges.shape == (B, T, s_range)
    for b in range(B):
        S_b, T_b = int(boundary[b, 2]), int(boundary[b, 3])
        assert int(ranges[b, T_b - 1, -1]) == S_b  # the final node (S_b, T_b - 1) is inside
        assert int(ranges[b, 0, 0]) == 0


def test_too_small_s_range_is_refused() -> None:
    with pytest.raises(ValueError, match=r"s_range must be >= 2 for the regular topology.*got 1"):
        prune_ranges(torch.zeros(1, 3, 6), torch.zeros(1, 4, 5), torch.tensor([[0, 0, 3, 5]]), 1)
