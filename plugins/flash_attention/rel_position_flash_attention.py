"""Relative-position attention (Transformer-XL, Dai et al., 2019, as in Conformer) on the
``flash`` kernels: ``flash`` with ``relative: true``. It is core's ``rel_mha`` (same
parameters) with the position term computed block by block.

The position term enters the softmax as an additive bias. flash-attn takes no arbitrary bias,
so this always runs on SDPA, block by block: the position scores of a block of query rows are
computed from only the distances that block needs, never as a (B, H, Tq, Tk) whole.
"""
from __future__ import annotations

import torch
from torch import Tensor

from speechforge.modules.rel_multi_head_attention import RelPositionMultiHeadAttention, rel_shift
from speechforge_plugins.flash_attention.flash_attention import FlashKernels


class RelPositionFlashAttention(FlashKernels, RelPositionMultiHeadAttention):
    """Scores = content term (q + u) Kᵀ + position term rel_shift((q + v) Pᵀ)."""

    component = "flash with relative: true"

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
        q, k, v, p, new_cache = self.relative_inputs(query, key, value, pos_emb, cache)
        q_len = q.size(1)
        q_u = (q + self.pos_bias_u).transpose(1, 2)  # (B, H, Tq, dk)
        q_v = (q + self.pos_bias_v).transpose(1, 2)

        def position_bias(start: int, end: int, lo: int, hi: int) -> Tensor:
            # Rows start..end-1 against keys lo..hi-1 need distances from (Tk-Tq+start)-(hi-1)
            # to (Tk-Tq+end-1)-lo: the contiguous slice of P below, shifted like rel_mha's.
            first = q_len - end + lo
            distances = p[:, first : first + (hi - lo) + (end - start) - 1]  # (H, rows+keys-1, dk)
            return rel_shift(torch.matmul(q_v[:, :, start:end], distances.transpose(-2, -1)), hi - lo)

        return self.attend(q_u, k, v, mask, position_bias), new_cache
