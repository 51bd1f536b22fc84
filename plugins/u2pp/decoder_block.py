"""One pre-norm Transformer decoder block: masked self-attention, cross-attention over the
encoder output, feed-forward. Parameter names follow WeNet's ``DecoderLayer``."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from speechforge.errors import ConfigError
from speechforge.interfaces import Attention
from speechforge.registry import build_component


class DecoderBlock(nn.Module):
    """x + SelfAttn(LN x) → x + SrcAttn(LN x, memory) → x + FFN(LN x).

    ``self_attention``, ``src_attention`` and ``ffn`` are component configs built from the
    ``attention`` and ``ffn`` registries, so MoE FFNs and other attention backends drop in.
    """

    def __init__(
        self,
        *,
        d_model: int,
        heads: int,
        self_attention: Mapping[str, Any],
        src_attention: Mapping[str, Any],
        ffn: Mapping[str, Any],
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.self_attn: Attention = build_component(
            "attention", self_attention, "self_attention", d_model=d_model, heads=heads
        )
        self.src_attn: Attention = build_component(
            "attention", src_attention, "src_attention", d_model=d_model, heads=heads
        )
        for key, attention in (("self_attention", self.self_attn), ("src_attention", self.src_attn)):
            if attention.uses_relative_position:
                raise ConfigError(
                    f"decoder.{key}: {type(attention).__name__} needs relative positions, which "
                    f"the decoder does not have; use an absolute-position attention such as mha"
                )
        self.feed_forward = build_component("ffn", ffn, "ffn", d_model=d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        tgt_mask: Tensor | None,
        memory: Tensor,
        memory_mask: Tensor,
        cache: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Args:
            x: (N, U, D) token states; N = B * G hypotheses, G consecutive per utterance.
            tgt_mask: (N, U, Uc + U) bool, True = attend, or None (step-wise decoding).
            memory: (B, T, D) encoder output; memory_mask (B, 1, T).
            cache: (N, H, Uc, 2 * D/H) self-attention keys/values of earlier tokens, or None.
        Returns: (N, U, D) and the new cache (N, H, Uc + U, 2 * D/H) when one was given.
        """
        h = self.norm1(x)
        att, new_cache = self.self_attn(h, h, h, tgt_mask, None, cache)
        x = x + self.dropout(att)
        h = self.norm2(x)
        # cross-attention treats each utterance's G hypotheses as G*U queries of one sequence
        queries = h.reshape(memory.size(0), -1, h.size(-1))  # (B, G * U, D)
        src, _ = self.src_attn(queries, memory, memory, memory_mask)
        x = x + self.dropout(src.reshape(x.shape))
        x = x + self.dropout(self.feed_forward(self.norm3(x)))
        return x, new_cache
