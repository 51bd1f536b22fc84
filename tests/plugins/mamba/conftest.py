"""Checks shared by the tests of the selective scans."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch

from speechforge_plugins.mamba.selective_scan import selective_scan_sequential


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
