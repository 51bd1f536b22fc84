"""Relative-position multi-head attention (Transformer-XL, Dai et al., 2019; as in Conformer),
registered as ``rel_mha``. Parameter names follow ESPnet's ``RelPositionMultiHeadedAttention``
(``rel_pos_type: latest``) so its checkpoints convert one to one."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from speechforge.modules.multi_head_attention import MultiHeadAttention, _extend_with_cache


def rel_shift(scores: Tensor, key_len: int) -> Tensor:
    """Turn scores against distances into scores against key positions.

    Args:
        scores: (B, H, Tq, P) with P = Tk + Tq - 1, column p holding distance Tk - 1 - p.
        key_len: Tk.
    Returns: (B, H, Tq, Tk) where [i, j] is the score for distance (Tk - Tq + i) - j, a strided
    view of ``scores`` (no copy).
    """
    scores = scores.contiguous()
    b, h, tq, p = scores.shape
    return scores.as_strided(
        (b, h, tq, key_len),
        (h * tq * p, tq * p, p - 1, 1),
        storage_offset=scores.storage_offset() + tq - 1,
    )


class RelPositionMultiHeadAttention(MultiHeadAttention):
    """Attention scores = content term + position term, with learned biases u and v."""

    uses_relative_position = True

    def __init__(
        self,
        *,
        d_model: int,
        heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        use_sdpa: bool = True,
    ) -> None:
        super().__init__(d_model=d_model, heads=heads, dropout=dropout, bias=bias, use_sdpa=use_sdpa)
        self.linear_pos = nn.Linear(d_model, d_model, bias=False)
        self.pos_bias_u = nn.Parameter(torch.empty(heads, self.d_head))
        self.pos_bias_v = nn.Parameter(torch.empty(heads, self.d_head))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None,
        pos_emb: Tensor | None = None,
        cache: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        if pos_emb is None:
            raise ValueError("rel_mha needs pos_emb: use it in an encoder with pos_enc 'rel'")
        q, k, v = self.project(query, key, value)
        q = q.view(q.size(0), q.size(1), self.heads, self.d_head)  # (B, Tq, H, dk)
        k, v = self._split_heads(k), self._split_heads(v)
        k, v, new_cache = _extend_with_cache(k, v, cache)
        p = self._split_heads(self.linear_pos(pos_emb))  # (1, H, P, dk)
        if p.size(2) != q.size(1) + k.size(2) - 1:
            raise ValueError(
                f"pos_emb covers {p.size(2)} distances, expected Tq + Tk - 1 = {q.size(1) + k.size(2) - 1}"
            )
        q_u = (q + self.pos_bias_u).transpose(1, 2)  # (B, H, Tq, dk)
        q_v = (q + self.pos_bias_v).transpose(1, 2)
        position_scores = rel_shift(torch.matmul(q_v, p.transpose(-2, -1)), k.size(2))  # (B, H, Tq, Tk)
        return self.attend(q_u, k, v, mask, bias=position_scores), new_cache
