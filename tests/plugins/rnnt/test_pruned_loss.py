"""The native pruned loss equals the real k2 1.23.4's, with its gradient wrt the pruned logits;
with ranges that keep every symbol it is the full transducer loss."""
from __future__ import annotations

import pytest
import torch

from speechforge_plugins.rnnt.full_loss import rnnt_loss
from speechforge_plugins.rnnt.pruned_loss import pruned_rnnt_loss

TOL = dict(rtol=1e-4, atol=1e-5)


def test_pruned_loss_and_logit_gradients_equal_k2(k2_case: dict) -> None:
    logits = k2_case["logits"].clone().requires_grad_(True)
    loss = pruned_rnnt_loss(
        logits, k2_case["symbols"], k2_case["ranges"], k2_case["blank"], k2_case["boundary"],
        k2_case["rnnt_type"], k2_case["delay_penalty"], reduction="none",
    )
    torch.testing.assert_close(loss, k2_case["pruned_loss"], **TOL)
    (grad,) = torch.autograd.grad(loss.sum(), logits)
    torch.testing.assert_close(grad, k2_case["logits_grad"], **TOL)


def test_unpruned_ranges_give_the_full_loss() -> None:
    g = torch.Generator().manual_seed(0)
    B, T, S, V = 3, 8, 4, 6
    logits = torch.randn(B, T, S + 1, V, generator=g)
    symbols = torch.randint(1, V, (B, S), generator=g)
    frames, lengths = torch.tensor([8, 6, 5]), torch.tensor([4, 2, 3])
    boundary = torch.stack([torch.zeros(B, dtype=torch.long), torch.zeros(B, dtype=torch.long), lengths, frames], 1)
    ranges = torch.arange(S + 1).expand(B, T, S + 1)
    pruned = pruned_rnnt_loss(logits, symbols, ranges, 0, boundary, reduction="none")
    full = rnnt_loss(logits, symbols, frames, lengths, reduction="none", backend="torchaudio")
    torch.testing.assert_close(pruned, full, **TOL)


def test_mismatched_ranges_are_refused() -> None:
    with pytest.raises(ValueError, match=r"ranges \(1, 6, 2\) and symbols \(1, 3\) do not fit logits \(1, 6, 3, 5\)"):
        pruned_rnnt_loss(torch.zeros(1, 6, 3, 5), torch.ones(1, 3, dtype=torch.long), torch.zeros(1, 6, 2, dtype=torch.long), 0)
