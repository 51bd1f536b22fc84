"""Label-smoothed cross-entropy as a KL divergence (Szegedy et al., 2016), in WeNet's
``LabelSmoothingLoss`` form: the target puts ``1 - smoothing`` on the label and spreads
``smoothing`` evenly over the other V - 1 tokens."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from speechforge_plugins.u2pp.targets import IGNORE_ID


class LabelSmoothingLoss(nn.Module):
    """Sum over valid positions of KL(target || softmax(logits)), divided by the batch size
    (or, with ``normalize_length``, by the number of valid tokens).

    The smoothed target is never materialised: with q the target distribution,
    ``KL = sum q log q - s * sum_v logp_v - (c - s) * logp_label`` where c is the label's
    mass and s each other token's.
    """

    def __init__(self, size: int, smoothing: float, ignore_id: int = IGNORE_ID, normalize_length: bool = False) -> None:
        super().__init__()
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
        if size < 2:
            raise ValueError(f"label smoothing needs at least 2 classes, got {size}")
        self.size = size
        self.ignore_id = ignore_id
        self.normalize_length = normalize_length
        self.confidence = 1.0 - smoothing
        self.other = smoothing / (size - 1)
        self.entropy_term = self.confidence * math.log(self.confidence) + (
            smoothing * math.log(self.other) if smoothing > 0 else 0.0
        )

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Args: logits (N, U, V), target (N, U) with ``ignore_id`` on padding. Returns a scalar."""
        if logits.size(-1) != self.size:
            raise ValueError(f"logits have {logits.size(-1)} classes, the loss was built for {self.size}")
        log_probs = torch.log_softmax(logits.float(), dim=-1)  # (N, U, V)
        valid = target != self.ignore_id  # (N, U)
        label_logp = log_probs.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (N, U)
        cross = self.other * log_probs.sum(-1) + (self.confidence - self.other) * label_logp
        kl = (self.entropy_term - cross).masked_fill(~valid, 0.0)
        denom = valid.sum().clamp(min=1) if self.normalize_length else logits.size(0)
        return kl.sum() / denom
