"""k2's recipe end to end: the joiner only sees the gathered (B, T, s_range, J) inputs, and the
two parts are the simple and pruned losses of the pieces."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from speechforge_plugins.rnnt import k2_backend
from speechforge_plugins.rnnt.lattice import make_boundary
from speechforge_plugins.rnnt.prune import gather_pruned, prune_ranges
from speechforge_plugins.rnnt.pruned_loss import pruned_rnnt_loss
from speechforge_plugins.rnnt.pruned_transducer_loss import pruned_transducer_loss
from speechforge_plugins.rnnt.simple_loss import simple_rnnt_loss

B, T, S, D, V = 3, 10, 4, 8, 6


@pytest.fixture
def batch() -> dict:
    torch.manual_seed(0)
    return {
        "encoder_out": torch.randn(B, T, D, requires_grad=True),
        "predictor_out": torch.randn(B, S + 1, D, requires_grad=True),
        "symbols": torch.randint(1, V, (B, S)),
        "boundary": make_boundary(torch.tensor([10, 7, 5]), torch.tensor([4, 3, 4])),
        "am_proj": nn.Linear(D, V),
        "lm_proj": nn.Linear(D, V),
        "out": nn.Linear(D, V),
    }


@pytest.mark.parametrize("rnnt_type", ["regular", "modified", "constrained"])
def test_parts_are_the_simple_and_pruned_losses(batch: dict, rnnt_type: str) -> None:
    shapes = []

    def joiner(am: torch.Tensor, lm: torch.Tensor) -> torch.Tensor:
        shapes.append((tuple(am.shape), tuple(lm.shape)))
        return batch["out"](torch.tanh(am + lm))

    am, lm = batch["am_proj"](batch["encoder_out"]), batch["lm_proj"](batch["predictor_out"])
    options = dict(rnnt_type=rnnt_type, delay_penalty=0.05, reduction="none")
    losses = pruned_transducer_loss(
        am, lm, batch["encoder_out"], batch["predictor_out"], joiner, batch["symbols"], batch["boundary"],
        s_range=3, lm_only_scale=0.25, am_only_scale=0.1, **options,
    )
    assert shapes == [((B, T, 3, D), (B, T, 3, D))]  # the joiner ran inside the ranges only
    simple, (px_grad, py_grad) = simple_rnnt_loss(lm, am, batch["symbols"], 0, batch["boundary"], lm_only_scale=0.25, am_only_scale=0.1, **options)
    torch.testing.assert_close(losses.simple, simple)
    ranges = prune_ranges(px_grad, py_grad, batch["boundary"], 3)
    assert torch.equal(losses.ranges, ranges)
    logits = batch["out"](torch.tanh(sum(gather_pruned(batch["encoder_out"], batch["predictor_out"], ranges))))
    torch.testing.assert_close(losses.pruned, pruned_rnnt_loss(logits, batch["symbols"], ranges, 0, batch["boundary"], **options))
    (losses.simple.sum() + losses.pruned.sum()).backward()
    assert batch["encoder_out"].grad is not None and bool(torch.isfinite(batch["encoder_out"].grad).all())


def test_unknown_backend_and_missing_k2_are_refused(batch: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    args = (batch["encoder_out"][..., :V], batch["predictor_out"][..., :V], batch["encoder_out"], batch["predictor_out"],
            lambda a, b: batch["out"](a + b), batch["symbols"], batch["boundary"])
    with pytest.raises(ValueError, match=r"backend must be one of native, k2, got 'torchaudio'"):
        pruned_transducer_loss(*args, backend="torchaudio")
    monkeypatch.setattr(k2_backend, "k2_available", lambda: False)
    with pytest.raises(ImportError, match=r"backend 'k2' needs the k2 package"):
        pruned_transducer_loss(*args, backend="k2")
