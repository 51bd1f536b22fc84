"""Relative-position attention (Transformer-XL, Dai et al., 2019, as in Conformer) on the
``flash`` kernels: ``flash`` with ``relative: true``. Parameters are those of core's
``rel_mha`` (``linear_pos``, ``pos_bias_u``, ``pos_bias_v`` besides ``linear_q/k/v/out``).

The position term enters the softmax as an additive bias. flash-attn takes no arbitrary bias,
so this always runs on SDPA, block by block: the position scores of a block of query rows are
computed from only the distances that block needs, never as a (B, H, Tq, Tk) whole.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from speechforge.modules.rel_multi_head_attention import rel_shift
from speechforge_plugins.flash_attention.flash_attention import FlashAttention, extend_with_cache


class RelPositionFlashAttention(FlashAttention):
    """Scores = content term (q + u) Kᵀ + position term rel_shift((q + v) Pᵀ)."""

    uses_relative_position = True

    def __init__(
        self,
        *,
        d_model: int,
        heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        query_block: int = 256,
    ) -> None:
        super().__init__(d_model=d_model, heads=heads, dropout=dropout, bias=bias, query_block=query_block)
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
        """Args:
            query: (B, Tq, D); key, value: (B, Tk, D).
            mask: (B, 1, Tc + Tk) or (B, Tq, Tc + Tk) bool, True = attend, or None.
            pos_emb: (1, Tc + Tk + Tq - 1, D) embeddings of distances Tc+Tk-1 ... -(Tq-1).
            cache: (B, H, Tc, 2 * dk) keys and values of earlier chunks, or None.
        Returns: (B, Tq, D) and the new cache (B, H, Tc + Tk, 2 * dk) or None.
        """
        if pos_emb is None:
            raise ValueError("flash with relative: true needs pos_emb: use it in an encoder with pos_enc 'rel'")
        q, k, v = self.project(query, key, value)
        q = q.view(q.size(0), q.size(1), self.heads, self.d_head)  # (B, Tq, H, dk)
        k, v = self.split_heads(k), self.split_heads(v)
        k, v, new_cache = extend_with_cache(k, v, cache)
        q_len, k_len = q.size(1), k.size(2)
        p = self.split_heads(self.linear_pos(pos_emb))  # (1, H, P, dk)
        if p.size(2) != q_len + k_len - 1:
            raise ValueError(f"pos_emb covers {p.size(2)} distances, expected Tq + Tk - 1 = {q_len + k_len - 1}")
        q_u = (q + self.pos_bias_u).transpose(1, 2)  # (B, H, Tq, dk)
        q_v = (q + self.pos_bias_v).transpose(1, 2)

        def position_bias(start: int, end: int, lo: int, hi: int) -> Tensor:
            # Rows start..end-1 against keys lo..hi-1 need distances from (Tk-Tq+start)-(hi-1)
            # to (Tk-Tq+end-1)-lo: the contiguous slice of P below, shifted like rel_mha's.
            first = q_len - end + lo
            distances = p[:, :, first : first + (hi - lo) + (end - start) - 1]  # (1, H, rows+keys-1, dk)
            return rel_shift(torch.matmul(q_v[:, :, start:end], distances.transpose(-2, -1)), hi - lo)

        return self.attend(q_u, k, v, mask, position_bias), new_cache
