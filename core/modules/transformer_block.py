"""Transformer encoder block (pre-norm), registered as ``encoder_block`` ``transformer``."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from speechforge.interfaces import BlockCache, EncoderBlock
from speechforge.registry import build_component


class TransformerBlock(EncoderBlock):
    """x + MHSA(LN x) → x + FFN(LN x). Streaming state key: ``"att"``."""

    def __init__(
        self,
        *,
        d_model: int,
        heads: int,
        ffn: Mapping[str, Any],
        attention: Mapping[str, Any],
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.self_attn = build_component("attention", attention, "attention", d_model=d_model, heads=heads)
        self.feed_forward = build_component("ffn", ffn, "ffn", d_model=d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        att_mask: Tensor | None,
        pad_mask: Tensor | None,
        pos_emb: Tensor | None = None,
        cache: BlockCache | None = None,
    ) -> tuple[Tensor, BlockCache | None]:
        """Args: x (B, T, D); att_mask (B, 1|T, T). Returns (B, T, D)."""
        h = self.norm1(x)
        att, att_cache = self.self_attn(h, h, h, att_mask, pos_emb, None if cache is None else cache["att"])
        x = x + self.dropout(att)
        x = x + self.dropout(self.feed_forward(self.norm2(x)))
        return x, None if cache is None else {"att": att_cache}
