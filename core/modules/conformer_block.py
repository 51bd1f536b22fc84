"""Conformer block (Gulati et al., 2020), registered as ``encoder_block`` ``conformer``:
macaron half-step FFNs around self-attention and convolution, all pre-norm.
Parameter names follow ESPnet's ``EncoderLayer`` so its checkpoints convert one to one."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from speechforge.errors import ConfigError
from speechforge.interfaces import BlockCache, EncoderBlock
from speechforge.modules.convolution import ConformerConvolution
from speechforge.modules.dropout import Dropout
from speechforge.modules.multi_head_attention import limit_cache
from speechforge.registry import build_component


class ConformerBlock(EncoderBlock):
    """x + ½FFN → x + MHSA → x + Conv → x + ½FFN → LayerNorm.

    Streaming state keys: ``"att"`` (B, H, Tc, 2·dk) and, with a convolution, ``"cnn"``
    (B, D, kernel_size - 1).
    """

    def __init__(
        self,
        *,
        d_model: int,
        heads: int,
        ffn: Mapping[str, Any],
        attention: Mapping[str, Any],
        dropout: float = 0.1,
        causal: bool = False,
        macaron: bool = True,
        conv_kernel: int = 15,
        conv_norm: str = "batch_norm",
        use_conv: bool = True,
    ) -> None:
        super().__init__()
        self.feed_forward_macaron = build_component("ffn", ffn, "ffn", d_model=d_model) if macaron else None
        self.self_attn = build_component("attention", attention, "attention", d_model=d_model, heads=heads)
        self.conv_module = (
            ConformerConvolution(d_model, conv_kernel, causal=causal, norm=conv_norm) if use_conv else None
        )
        self.feed_forward = build_component("ffn", ffn, "ffn", d_model=d_model)
        self.ff_scale = 0.5 if macaron else 1.0
        self.norm_ff_macaron = nn.LayerNorm(d_model) if macaron else None
        self.norm_mha = nn.LayerNorm(d_model)
        self.norm_conv = nn.LayerNorm(d_model) if use_conv else None
        self.norm_ff = nn.LayerNorm(d_model)
        self.norm_final = nn.LayerNorm(d_model)
        self.dropout = Dropout(dropout)

    def initial_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> BlockCache:
        """No attention keys and zero convolution history; the convolution must be causal."""
        state = {"att": self.self_attn.initial_cache(batch_size, device, dtype)}
        if self.conv_module is not None:
            if not self.conv_module.causal:
                raise ConfigError("has a convolution that sees the future; streaming needs causal: true")
            state["cnn"] = self.conv_module.initial_cache(batch_size, device, dtype)
        return state

    def limit_history(self, state: BlockCache, frames: int) -> BlockCache:
        return {**state, "att": limit_cache(state["att"], frames)}

    def forward(
        self,
        x: Tensor,
        att_mask: Tensor | None,
        pad_mask: Tensor | None,
        pos_emb: Tensor | None = None,
        cache: BlockCache | None = None,
    ) -> tuple[Tensor, BlockCache | None]:
        """Args: x (B, T, D); att_mask (B, 1|T, T); pad_mask (B, 1, T). Returns (B, T, D)."""
        if self.feed_forward_macaron is not None:
            x = x + self.ff_scale * self.dropout(self.feed_forward_macaron(self.norm_ff_macaron(x)))
        h = self.norm_mha(x)
        att, att_cache = self.self_attn(h, h, h, att_mask, pos_emb, None if cache is None else cache["att"])
        x = x + self.dropout(att)
        cnn_cache = None
        if self.conv_module is not None:
            conv, cnn_cache = self.conv_module(
                self.norm_conv(x), pad_mask, None if cache is None else cache["cnn"]
            )
            x = x + self.dropout(conv)
        x = x + self.ff_scale * self.dropout(self.feed_forward(self.norm_ff(x)))
        x = self.norm_final(x)
        if cache is None:
            return x, None
        new_cache = {"att": att_cache}
        if cnn_cache is not None:
            new_cache["cnn"] = cnn_cache
        return x, new_cache
