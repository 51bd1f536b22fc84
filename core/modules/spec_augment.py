"""SpecAugment (Park et al., 2019): random time and frequency masks, optional time warp,
applied to a padded batch in one pass (no per-utterance Python loop for the masks)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _band_mask(lengths: Tensor, size: int, num: int, max_width: int) -> Tensor:
    """(B, size) bool: ``num`` random bands of width < ``max_width`` inside each length."""
    b = lengths.size(0)
    width = (torch.rand(b, num, device=lengths.device) * max_width).long()  # (B, num)
    room = (lengths.unsqueeze(1) - width).clamp(min=1)
    start = (torch.rand(b, num, device=lengths.device) * room).long()
    pos = torch.arange(size, device=lengths.device).view(1, 1, size)
    inside = (pos >= start.unsqueeze(-1)) & (pos < (start + width).unsqueeze(-1))  # (B, num, size)
    return inside.any(dim=1)


class SpecAugment(nn.Module):
    """Masks set features to 0 (the mean, after CMVN). Active in training only."""

    def __init__(
        self,
        num_freq_masks: int = 2,
        max_freq_width: int = 10,
        num_time_masks: int = 2,
        max_time_width: int = 50,
        max_time_ratio: float = 0.2,
        time_warp: int = 0,
    ) -> None:
        super().__init__()
        self.num_freq_masks = num_freq_masks
        self.max_freq_width = max_freq_width
        self.num_time_masks = num_time_masks
        self.max_time_width = max_time_width
        self.max_time_ratio = max_time_ratio
        self.time_warp = time_warp

    def forward(self, feats: Tensor, lengths: Tensor) -> Tensor:
        """Args: feats (B, T, F), lengths (B,). Returns (B, T, F)."""
        if not self.training:
            return feats
        if self.time_warp > 0:
            feats = self._warp(feats, lengths)
        b, t, f = feats.shape
        if self.num_freq_masks:
            full = torch.full((b,), f, device=feats.device)
            freq = _band_mask(full, f, self.num_freq_masks, self.max_freq_width)  # (B, F)
            feats = feats.masked_fill(freq.unsqueeze(1), 0.0)
        if self.num_time_masks:
            width = min(self.max_time_width, max(1, int(self.max_time_ratio * t)))
            time = _band_mask(lengths, t, self.num_time_masks, width)  # (B, T)
            feats = feats.masked_fill(time.unsqueeze(2), 0.0)
        return feats

    def _warp(self, feats: Tensor, lengths: Tensor) -> Tensor:
        """Stretch the part left of a random centre and squeeze the rest (per utterance)."""
        out = feats.clone()
        for i, length in enumerate(lengths.tolist()):
            if length <= 2 * self.time_warp + 1:
                continue
            centre = int(torch.randint(self.time_warp, length - self.time_warp, ()))
            target = centre + int(torch.randint(-self.time_warp, self.time_warp + 1, ()))
            target = min(max(target, 1), length - 1)
            x = feats[i, :length].t().unsqueeze(0)  # (1, F, T)
            left = F.interpolate(x[..., :centre], size=target, mode="linear", align_corners=False)
            right = F.interpolate(x[..., centre:], size=length - target, mode="linear", align_corners=False)
            out[i, :length] = torch.cat((left, right), dim=-1)[0].t()
        return out
