"""Absolute sinusoidal positional encoding (Vaswani et al., 2017)."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoid(positions: Tensor, d_model: int) -> Tensor:
    """Sinusoidal encodings of (possibly negative) integer positions.

    Args: positions (P,). Returns (P, D): sin in even columns, cos in odd ones.
    """
    inv_freq = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32, device=positions.device)
        * -(math.log(10000.0) / d_model)
    )
    angles = positions.to(torch.float32).unsqueeze(1) * inv_freq  # (P, D/2)
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(1)


class PositionalEncoding(nn.Module):
    """Scales the input by sqrt(D) and adds absolute sinusoidal encodings."""

    def __init__(self, d_model: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.d_model = d_model
        self.scale = math.sqrt(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, offset: int | Tensor = 0) -> tuple[Tensor, None]:
        """Args: x (B, T, D); offset: position of the first frame (streaming), an int or a
        (1,) tensor (an exported chunk graph takes it as an input).
        Returns: (B, T, D) and None (no separate positional embedding)."""
        positions = torch.arange(x.size(1), device=x.device) + offset  # (T,)
        x = x * self.scale + sinusoid(positions, self.d_model).to(x.dtype)
        return self.dropout(x), None
