"""Relative positional encoding for Transformer-XL style attention (Dai et al., 2019), as
used by Conformer: the input is only scaled, and embeddings of relative distances are
returned for the attention to use."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from speechforge.modules.dropout import Dropout
from speechforge.modules.positional_encoding import sinusoid


class RelPositionalEncoding(nn.Module):
    """Scales the input by sqrt(D) and returns embeddings of distances Tk-1 ... -(Tq-1)."""

    def __init__(self, d_model: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.d_model = d_model
        self.scale = math.sqrt(d_model)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, offset: int = 0) -> tuple[Tensor, Tensor]:
        """Args:
            x: (B, T, D) frames of the current chunk.
            offset: frames before it that attention will see through a cache.
        Returns: x (B, T, D) and pos_emb (1, offset + 2T - 1, D).
        """
        query_len, key_len = x.size(1), offset + x.size(1)
        distances = torch.arange(key_len - 1, -query_len, -1, device=x.device)
        pos_emb = sinusoid(distances, self.d_model).to(x.dtype).unsqueeze(0)
        return self.dropout(x * self.scale), self.dropout(pos_emb)
