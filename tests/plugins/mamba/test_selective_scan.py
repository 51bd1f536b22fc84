"""The chunked scan against the plain sequential reference, and the streaming step."""
from __future__ import annotations

import pytest
import torch

from speechforge_plugins.mamba.selective_scan import (
    selective_scan_chunked,
    selective_scan_sequential,
    selective_scan_step,
)

BATCH, DIM, STATE = 2, 6, 5  # the shapes make_inputs (conftest.py) gives by default


@pytest.mark.parametrize("chunk_size", [4, 16, 64])
@pytest.mark.parametrize("length", [1, 7, 16, 50, 129])
@pytest.mark.parametrize("with_state", [False, True])
def test_chunked_equals_sequential(length: int, chunk_size: int, with_state: bool, make_inputs) -> None:
    inputs = make_inputs(length)
    state = torch.randn(BATCH, DIM, STATE) if with_state else None
    y_ref, last_ref = selective_scan_sequential(**inputs, initial_state=state)
    y, last = selective_scan_chunked(**inputs, initial_state=state, chunk_size=chunk_size)
    assert y.shape == (BATCH, DIM, length) and last.shape == (BATCH, DIM, STATE)
    torch.testing.assert_close(y, y_ref, atol=1e-4, rtol=0)
    torch.testing.assert_close(last, last_ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("chunk_size", [3, 8])
def test_padded_frames_with_zero_delta_leave_the_state_alone(
    chunk_size: int, assert_each_utterance_alone, make_inputs
) -> None:
    """A padded batch: delta = 0 on padding, so each utterance's last state is the state after
    its last valid frame, and its valid outputs are those of the utterance alone."""
    inputs = make_inputs(21)
    lengths = [21, 13]
    valid = torch.arange(21) < torch.tensor(lengths)[:, None]  # (B, L)
    inputs["delta"] = inputs["delta"].masked_fill(~valid[:, None], 0.0)
    y, last = selective_scan_chunked(**inputs, chunk_size=chunk_size)
    assert_each_utterance_alone(y, last, inputs, lengths)


def test_gradients_equal_sequential(make_inputs) -> None:
    inputs = make_inputs(37)
    state = torch.randn(BATCH, DIM, STATE)
    grads = []
    for scan, kwargs in ((selective_scan_sequential, {}), (selective_scan_chunked, {"chunk_size": 8})):
        leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
        h0 = state.clone().requires_grad_()
        y, last = scan(**leaves, initial_state=h0, **kwargs)
        (y.sin().sum() + last.cos().sum()).backward()
        grads.append({**{k: v.grad for k, v in leaves.items()}, "initial_state": h0.grad})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-4, rtol=1e-4, msg=name)


def test_stable_for_large_decays(make_inputs) -> None:
    """delta * |A| up to ~1e3 per frame: exps of large negative numbers only, no inf/NaN."""
    inputs = make_inputs(40, delta_shift=6.0, a_scale=100.0)
    y_ref, last_ref = selective_scan_sequential(**inputs)
    y, last = selective_scan_chunked(**inputs, chunk_size=16)
    assert torch.isfinite(y).all() and torch.isfinite(last).all()
    torch.testing.assert_close(y, y_ref, atol=1e-4, rtol=0)
    torch.testing.assert_close(last, last_ref, atol=1e-4, rtol=0)


def test_step_by_step_equals_full_sequence(make_inputs) -> None:
    inputs = make_inputs(23)
    y_full, last_full = selective_scan_chunked(**inputs, chunk_size=8)
    state = torch.zeros(BATCH, DIM, STATE)
    ys = []
    for t in range(23):
        y, state = selective_scan_step(
            state, inputs["u"][:, :, t], inputs["delta"][:, :, t], inputs["A"], inputs["B"][:, :, t], inputs["C"][:, :, t]
        )
        ys.append(y)
    torch.testing.assert_close(torch.stack(ys, dim=2), y_full, atol=1e-4, rtol=0)
    torch.testing.assert_close(state, last_full, atol=1e-4, rtol=0)


def test_chunks_with_carried_state_equal_full_sequence(make_inputs) -> None:
    inputs = make_inputs(30)
    y_full, last_full = selective_scan_chunked(**inputs, chunk_size=8)
    state, ys = None, []
    for start, end in ((0, 11), (11, 12), (12, 30)):
        piece = {k: v[..., start:end] if k != "A" else v for k, v in inputs.items()}
        y, state = selective_scan_chunked(**piece, initial_state=state, chunk_size=8)
        ys.append(y)
    torch.testing.assert_close(torch.cat(ys, dim=2), y_full, atol=1e-4, rtol=0)
    torch.testing.assert_close(state, last_full, atol=1e-4, rtol=0)


def test_half_inputs_are_scanned_in_float32(make_inputs) -> None:
    inputs = make_inputs(20)
    y_ref, _ = selective_scan_sequential(**inputs)
    y, last = selective_scan_chunked(**{k: v.bfloat16() for k, v in inputs.items()}, chunk_size=8)
    assert y.dtype == torch.bfloat16 and last.dtype == torch.float32
    torch.testing.assert_close(y.float(), y_ref, atol=0.2, rtol=0.05)


def test_chunk_size_must_be_positive(make_inputs) -> None:
    with pytest.raises(ValueError, match="chunk_size must be positive, got 0"):
        selective_scan_chunked(**make_inputs(5), chunk_size=0)
