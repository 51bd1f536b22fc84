"""The native full transducer loss equals torchaudio's (loss and gradients) on padded batches."""
from __future__ import annotations

import pytest
import torch

from speechforge_plugins.rnnt.full_loss import rnnt_loss


def padded_batch(seed: int, B: int = 4, T: int = 9, U: int = 5, V: int = 7) -> dict:
    g = torch.Generator().manual_seed(seed)
    logit_lengths = torch.randint(1, T + 1, (B,), generator=g)
    logit_lengths[0] = T
    target_lengths = torch.randint(0, U + 1, (B,), generator=g)
    target_lengths[1], target_lengths[2] = U, 0  # a full-length and an empty transcript
    return {
        "logits": torch.randn(B, T, U + 1, V, generator=g) * 2,
        "targets": torch.randint(1, V, (B, U), generator=g),
        "logit_lengths": logit_lengths,
        "target_lengths": target_lengths,
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_native_loss_and_gradients_equal_torchaudio(seed: int) -> None:
    batch = padded_batch(seed)
    results = {}
    for backend in ("native", "torchaudio"):
        logits = batch["logits"].clone().requires_grad_(True)
        loss = rnnt_loss(logits, batch["targets"], batch["logit_lengths"], batch["target_lengths"], reduction="none", backend=backend)
        (grad,) = torch.autograd.grad(loss.sum(), logits)
        results[backend] = (loss, grad)
    torch.testing.assert_close(results["native"][0], results["torchaudio"][0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(results["native"][1], results["torchaudio"][1], rtol=1e-4, atol=1e-5)


def test_reductions_and_blank_index() -> None:
    batch = padded_batch(3, V=6)
    batch["targets"] = batch["targets"] - 1  # labels 0..4, blank is the last class
    per_seq = rnnt_loss(**batch, blank=5, reduction="none")
    torch.testing.assert_close(per_seq, rnnt_loss(**batch, blank=5, reduction="none", backend="torchaudio"), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(rnnt_loss(**batch, blank=5, reduction="sum"), per_seq.sum())
    torch.testing.assert_close(rnnt_loss(**batch, blank=5, reduction="mean"), per_seq.mean())


def test_bad_input_is_refused_with_the_value() -> None:
    batch = padded_batch(4)
    with pytest.raises(ValueError, match=r"backend must be one of native, torchaudio, got 'k2'"):
        rnnt_loss(**batch, backend="k2")
    with pytest.raises(ValueError, match=r"logit_lengths must be in \[1, 9\], got \[10,"):
        rnnt_loss(batch["logits"], batch["targets"], torch.tensor([10, 1, 1, 1]), batch["target_lengths"])
    with pytest.raises(ValueError, match=r"targets must be \(B, U\) = \(4, 5\)"):
        rnnt_loss(batch["logits"], batch["targets"][:, :3], batch["logit_lengths"], batch["target_lengths"])
    with pytest.raises(ValueError, match=r"reduction must be one of none, mean, sum, got 'max'"):
        rnnt_loss(**batch, reduction="max")
