"""The export scan (fixed chunk, closed-form carry) against the sequential reference."""
from __future__ import annotations

import pytest
import torch

from speechforge_plugins.mamba.selective_scan import selective_scan_sequential
from speechforge_plugins.mamba.selective_scan_export import selective_scan_export

BATCH, DIM, STATE = 2, 6, 5  # the shapes make_inputs (conftest.py) gives by default


@pytest.mark.parametrize("length", [1, 7, 8, 9, 30, 64])
@pytest.mark.parametrize("with_state", [False, True])
def test_equals_sequential_below_at_and_above_the_chunk(length: int, with_state: bool, make_inputs) -> None:
    inputs = make_inputs(length)
    state = torch.randn(BATCH, DIM, STATE) if with_state else None
    y_ref, last_ref = selective_scan_sequential(**inputs, initial_state=state)
    y, last = selective_scan_export(**inputs, initial_state=state, chunk_size=8)
    assert y.shape == (BATCH, DIM, length) and last.shape == (BATCH, DIM, STATE)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(last, last_ref, atol=1e-5, rtol=1e-5)


def test_default_chunk_equals_sequential(make_inputs) -> None:
    inputs = make_inputs(70)
    state = torch.randn(BATCH, DIM, STATE)
    y_ref, last_ref = selective_scan_sequential(**inputs, initial_state=state)
    y, last = selective_scan_export(**inputs, initial_state=state)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(last, last_ref, atol=1e-5, rtol=1e-5)


def test_padded_frames_with_zero_delta_leave_the_state_alone(assert_each_utterance_alone, make_inputs) -> None:
    inputs = make_inputs(21)
    lengths = [21, 13]
    valid = torch.arange(21) < torch.tensor(lengths)[:, None]  # (B, L)
    inputs["delta"] = inputs["delta"].masked_fill(~valid[:, None], 0.0)
    y, last = selective_scan_export(**inputs, chunk_size=4)
    assert_each_utterance_alone(y, last, inputs, lengths)


def test_stable_for_large_decays(make_inputs) -> None:
    """delta * |A| up to ~1e3 per frame: the closed form takes exps of non-positive numbers only."""
    inputs = make_inputs(40, delta_shift=6.0, a_scale=100.0)
    y_ref, last_ref = selective_scan_sequential(**inputs)
    y, last = selective_scan_export(**inputs, chunk_size=4)
    assert torch.isfinite(y).all() and torch.isfinite(last).all()
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(last, last_ref, atol=1e-5, rtol=1e-5)
