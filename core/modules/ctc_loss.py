"""CTC loss (Graves et al., 2006), registered as ``loss`` ``ctc``."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from speechforge.interfaces import Loss, LossInputs


class CTCLoss(Loss):
    """Sum of per-utterance CTC losses over the batch, divided by the batch size (WeNet's
    normalisation). Utterances too short for their labels give zero loss, not inf. The model
    builds its CTC head because this loss asks for one."""

    needs_ctc_head = True

    def __init__(self, *, blank_id: int = 0) -> None:
        super().__init__()
        self.blank_id = blank_id

    def forward(self, inputs: LossInputs) -> Tensor:
        log_probs = inputs.model.ctc(inputs.encoder_out)  # (B, T, V)
        targets = inputs.targets.clamp(min=0)  # padding (-1) is cut by target_lens
        loss = F.ctc_loss(
            log_probs.transpose(0, 1),  # (T, B, V)
            targets,
            inputs.encoder_lens,
            inputs.target_lens,
            blank=self.blank_id,
            reduction="sum",
            zero_infinity=True,
        )
        return loss / log_probs.size(0)
