"""Inputs and checks shared by the tests of the selective scans."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch
import torch.nn.functional as F

from speechforge_plugins.mamba.selective_scan import selective_scan_sequential


@pytest.fixture
def make_inputs() -> Callable[..., dict[str, torch.Tensor]]:
    """``make(length, dim=6, state=5, seed=0, delta_shift=0.0, a_scale=4.0)``: random inputs of a
    scan for a batch of 2: u (2, dim, L); delta (2, dim, L), softplus of a normal shifted by
    ``delta_shift``, so positive; A (dim, state) uniform in [-a_scale - 0.1, -0.1], so every
    decay is below 1; B, C (2, state, L). The same ``seed`` gives the same tensors."""

    def make(
        length: int, dim: int = 6, state: int = 5, seed: int = 0, delta_shift: float = 0.0, a_scale: float = 4.0
    ) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        return {
            "u": torch.randn(2, dim, length, generator=g),
            "delta": F.softplus(torch.randn(2, dim, length, generator=g) + delta_shift),
            "A": -torch.rand(dim, state, generator=g) * a_scale - 0.1,
            "B": torch.randn(2, state, length, generator=g),
            "C": torch.randn(2, state, length, generator=g),
        }

    return make


@pytest.fixture
def assert_each_utterance_alone() -> Callable[..., None]:
    """``check(y, last, inputs, lengths)``: the outputs and last states a scan gave for a padded
    batch (delta = 0 on padding) are, for each utterance, the sequential reference's on that
    utterance alone."""

    def check(y: torch.Tensor, last: torch.Tensor, inputs: dict[str, torch.Tensor], lengths: Sequence[int]) -> None:
        for b, n in enumerate(lengths):
            alone = {k: v[b : b + 1, ..., :n] if k != "A" else v for k, v in inputs.items()}
            y_alone, last_alone = selective_scan_sequential(**alone)
            torch.testing.assert_close(y[b : b + 1, :, :n], y_alone, atol=1e-4, rtol=0)
            torch.testing.assert_close(last[b : b + 1], last_alone, atol=1e-4, rtol=0)

    return check
