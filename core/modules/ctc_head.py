"""The CTC output layer: encodings to per-frame token log-probabilities."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class CTCHead(nn.Module):
    """A linear projection (``ctc_lo``, as in ESPnet/WeNet) and log-softmax."""

    def __init__(self, encoder_dim: int, vocab_size: int) -> None:
        super().__init__()
        self.ctc_lo = nn.Linear(encoder_dim, vocab_size)

    def forward(self, encoder_out: Tensor) -> Tensor:
        """Args: encoder_out (B, T, D). Returns log-probs (B, T, V) in float32."""
        return torch.log_softmax(self.ctc_lo(encoder_out).float(), dim=-1)
