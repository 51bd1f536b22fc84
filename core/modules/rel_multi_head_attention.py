"""Relative-position multi-head attention (Transformer-XL, Dai et al., 2019; as in Conformer),
registered as ``rel_mha``. Parameter names follow ESPnet's ``RelPositionMultiHeadedAttention``
(``rel_pos_type: latest``) so its checkpoints convert one to one."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from speechforge.modules.export_mode import is_exporting
from speechforge.modules.multi_head_attention import MultiHeadAttention, extend_with_cache


def rel_shift(scores: Tensor, key_len: int) -> Tensor:
    """Turn scores against distances into scores against key positions.

    Args:
        scores: (B, H, Tq, P) with P = Tk + Tq - 1, column p holding distance Tk - 1 - p; any
            memory layout.
        key_len: Tk.
    Returns: (B, H, Tq, Tk) where [i, j] is the score for distance (Tk - Tq + i) - j, a strided
    view of ``scores`` (no copy): row i starts i columns further left than row i - 1. Under a
    graph exporter, where a view with a computed storage offset has no equivalent, the same
    values come from :func:`rel_shift_by_gather`.
    """
    if is_exporting():
        return rel_shift_by_gather(scores, key_len)
    b, h, tq, p = scores.shape
    batch_stride, head_stride, row_stride, col_stride = scores.stride()
    if row_stride < col_stride:  # a layout the shifted view cannot express
        scores = scores.contiguous()
        batch_stride, head_stride, row_stride, col_stride = scores.stride()
    return scores.as_strided(
        (b, h, tq, key_len),
        (batch_stride, head_stride, row_stride - col_stride, col_stride),
        storage_offset=scores.storage_offset() + (tq - 1) * col_stride,
    )


def rel_shift_by_gather(scores: Tensor, key_len: int) -> Tensor:
    """:func:`rel_shift` as one gather along the last axis (ONNX ``GatherElements``): [i, j]
    reads column Tq - 1 - i + j. A copy, so kept for export; shapes as in :func:`rel_shift`."""
    b, h, tq, _ = scores.shape
    rows = torch.arange(tq, device=scores.device).unsqueeze(1)  # (Tq, 1)
    keys = torch.arange(key_len, device=scores.device).unsqueeze(0)  # (1, Tk)
    columns = (keys - rows + (tq - 1)).expand(b, h, tq, key_len)  # (B, H, Tq, Tk)
    return torch.gather(scores, 3, columns)


class RelPositionMultiHeadAttention(MultiHeadAttention):
    """Attention scores = content term + position term, with learned biases u and v."""

    uses_relative_position = True
    component = "rel_mha"  # how error messages name it

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
        """Args:
            query: (B, Tq, D); key, value: (B, Tk, D).
            mask: (B, 1 | Tq, Tc + Tk) bool, True = attend, or None.
            pos_emb: (1, Tc + Tk + Tq - 1, D) embeddings of distances Tc+Tk-1 ... -(Tq-1).
            cache: (B, H, Tc, 2 * dk) keys and values of earlier chunks, or None.
        Returns: (B, Tq, D) and the new cache (B, H, Tc + Tk, 2 * dk) or None.

        The position scores are one matmul per head with the batch folded into its rows
        ((H, B·Tq, dk) x (H, dk, P)), so the distance embeddings are neither broadcast nor
        copied per utterance, and their gradient is one matmul instead of a sum over the batch.
        """
        q, k, v, p, new_cache = self.relative_inputs(query, key, value, pos_emb, cache)
        batch, q_len = q.size(0), q.size(1)
        q_u = (q + self.pos_bias_u).transpose(1, 2)  # (B, H, Tq, dk)
        q_v = (q + self.pos_bias_v).permute(2, 0, 1, 3).reshape(self.heads, batch * q_len, self.d_head)
        position_scores = torch.bmm(q_v, p.transpose(1, 2))  # (H, B·Tq, P)
        position_scores = position_scores.view(self.heads, batch, q_len, -1).transpose(0, 1)  # (B, H, Tq, P)
        return self.attend(q_u, k, v, mask, bias=rel_shift(position_scores, k.size(2))), new_cache

    def relative_inputs(
        self, query: Tensor, key: Tensor, value: Tensor, pos_emb: Tensor | None, cache: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
        """Projections every relative-position kernel starts from, with ``pos_emb`` checked.

        Returns: q (B, Tq, H, dk); k, v (B, H, Tc + Tk, dk) with the cache prepended; p
        (H, P, dk) projected distance embeddings; the new cache or None.
        """
        if pos_emb is None:
            raise ValueError(f"{self.component} needs pos_emb: use it in an encoder with pos_enc 'rel'")
        q, k, v = self.project(query, key, value)
        q = q.view(q.size(0), q.size(1), self.heads, self.d_head)
        k, v, new_cache = extend_with_cache(self.split_heads(k), self.split_heads(v), cache)
        if pos_emb.dim() != 3 or pos_emb.size(0) != 1:
            raise ValueError(f"pos_emb must be (1, P, D), shared by the batch; got shape {tuple(pos_emb.shape)}")
        expected = q.size(1) + k.size(2) - 1
        if pos_emb.size(1) != expected:
            raise ValueError(f"pos_emb covers {pos_emb.size(1)} distances, expected Tq + Tk - 1 = {expected}")
        p = self.linear_pos(pos_emb).view(-1, self.heads, self.d_head).transpose(0, 1)
        return q, k, v, p, new_cache
