"""The native simple (and smoothed) loss equals the real k2 1.23.4's, with its occupation
gradients and the gradients wrt am and lm, for every topology, delay penalty and smoothing."""
from __future__ import annotations

import pytest
import torch

from speechforge_plugins.rnnt.simple_loss import simple_rnnt_loss

TOL = dict(rtol=1e-4, atol=1e-5)


def run_simple(case: dict, reduction: str = "none"):
    am = case["am"].clone().requires_grad_(True)
    lm = case["lm"].clone().requires_grad_(True)
    loss, grads = simple_rnnt_loss(
        lm, am, case["symbols"], case["blank"], case["boundary"], case["rnnt_type"], case["delay_penalty"],
        case["lm_only_scale"], case["am_only_scale"], reduction,
    )
    return am, lm, loss, grads


def test_simple_loss_and_gradients_equal_k2(k2_case: dict) -> None:
    am, lm, loss, (px_grad, py_grad) = run_simple(k2_case)
    torch.testing.assert_close(loss, k2_case["simple_loss"], **TOL)
    torch.testing.assert_close(px_grad, k2_case["px_grad"], **TOL)
    torch.testing.assert_close(py_grad, k2_case["py_grad"], **TOL)
    am_grad, lm_grad = torch.autograd.grad(loss.sum(), (am, lm))
    torch.testing.assert_close(am_grad, k2_case["am_grad"], **TOL)
    torch.testing.assert_close(lm_grad, k2_case["lm_grad"], **TOL)


def test_delay_penalty_and_smoothing_change_the_loss(k2_case: dict) -> None:
    """The fixtures' settings are live: flipping them moves the loss."""
    flipped = dict(
        k2_case,
        delay_penalty=0.1 - k2_case["delay_penalty"],
        lm_only_scale=0.25 - k2_case["lm_only_scale"],
        am_only_scale=0.1 - k2_case["am_only_scale"],
    )
    assert not torch.allclose(run_simple(flipped)[2], k2_case["simple_loss"], rtol=1e-3)


def test_unknown_topology_and_short_lattice_are_refused() -> None:
    am, lm, symbols = torch.zeros(1, 4, 5), torch.zeros(1, 3, 5), torch.ones(1, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"rnnt_type must be one of regular, modified, constrained, got 'hat'"):
        simple_rnnt_loss(lm, am, symbols, 0, rnnt_type="hat")
    with pytest.raises(ValueError, match=r"needs 1 <= S <= T, got S=2, T=1"):
        simple_rnnt_loss(lm, am[:, :1], symbols, 0)
    with pytest.raises(ValueError, match=r"lm must be \(B, S\+1, C\) = \(1, S\+1, 5\)"):
        simple_rnnt_loss(lm[..., :4], am, symbols, 0)
