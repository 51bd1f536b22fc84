"""Transformer encoder block (pre-norm), registered as ``encoder_block`` ``transformer``."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from speechforge.interfaces import BlockCache, EncoderBlock
from speechforge.modules.multi_head_attention import limit_cache
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

    def initial_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> BlockCache:
        """No attention keys yet."""
        return {"att": self.self_attn.initial_cache(batch_size, device, dtype)}

    def limit_history(self, state: BlockCache, frames: int) -> BlockCache:
        return {"att": limit_cache(state["att"], frames)}

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
