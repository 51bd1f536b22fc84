"""Multi-head attention on FlashAttention kernels (Dao et al., 2022), part of the ``flash``
attention component. It is core's ``mha`` with another ``attend``: same parameters, so state
dicts load either way; which kernel runs when is decided in
:mod:`speechforge_plugins.flash_attention.kernels`."""
from __future__ import annotations

import math

from torch import Tensor

from speechforge.modules.multi_head_attention import MultiHeadAttention
from speechforge_plugins.flash_attention import kernels


class FlashKernels:
    """Mixin for core attention classes: ``attend`` through :func:`kernels.attention`, whose
    blocked path takes position scores as a callback (``PositionBias``) instead of a tensor."""

    heads: int
    d_head: int
    dropout_p: float
    training: bool

    def __init__(self, *, query_block: int = 256, **attention_options: object) -> None:
        if query_block <= 0:
            raise ValueError(f"query_block must be positive, got {query_block}")
        super().__init__(**attention_options)
        self.query_block = query_block

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, bias: kernels.PositionBias | None
    ) -> Tensor:
        """Attention of all heads plus the output projection.

        Args:
            q: (B, H, Tq, dk); k, v: (B, H, Tk, dk).
            mask: (B, 1 | Tq, Tk) bool or None.
            bias: relative-position scores by block, or None.
        Returns: (B, Tq, D), zero on rows with no key to attend to.
        """
        out, empty = kernels.attention(
            q,
            k,
            v,
            mask,
            scale=1.0 / math.sqrt(self.d_head),
            dropout_p=self.dropout_p if self.training else 0.0,
            position_bias=bias,
            query_block=self.query_block,
        )  # (B, Tq, D)
        out = self.linear_out(out)
        if empty is not None:
            out = out.masked_fill(empty, 0.0)
        return out


class FlashAttention(FlashKernels, MultiHeadAttention):
    """``mha`` on the flash kernels: self- or cross-attention with the streaming K/V cache of
    the Attention contract; ``pos_emb`` is ignored (absolute positions are in the input)."""
