"""CTC loss equals torch's per-utterance loss averaged over the batch."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from speechforge.interfaces import LossInputs
from speechforge.modules.ctc_head import CTCHead
from speechforge.modules.ctc_loss import CTCLoss


class Holder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ctc = CTCHead(8, 6)


def test_ctc_loss_is_mean_of_per_utterance_losses():
    model = Holder()
    enc = torch.randn(3, 10, 8)
    enc_lens = torch.tensor([10, 7, 5])
    targets = torch.tensor([[1, 2, 3], [4, -1, -1], [5, 5, -1]])
    target_lens = torch.tensor([3, 1, 2])
    loss = CTCLoss()(LossInputs(model, enc, enc_lens, targets, target_lens))
    log_probs = model.ctc(enc)
    expected = [
        F.ctc_loss(log_probs[i, : enc_lens[i]].unsqueeze(1), targets[i : i + 1, : target_lens[i]],
                   enc_lens[i : i + 1], target_lens[i : i + 1], reduction="sum")
        for i in range(3)
    ]
    torch.testing.assert_close(loss, torch.stack(expected).mean())


def test_impossible_alignment_gives_zero_not_inf():
    model = Holder()
    loss = CTCLoss()(LossInputs(model, torch.randn(1, 2, 8), torch.tensor([2]), torch.tensor([[1, 2, 3, 4]]), torch.tensor([4])))
    assert torch.isfinite(loss) and loss == 0
