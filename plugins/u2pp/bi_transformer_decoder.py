"""Bidirectional attention decoder of U2++ (Wu et al., 2021), registered as ``decoder``
``bitransformer``: a left-to-right and a right-to-left Transformer decoder over the same
encoder output. Parameter names follow WeNet's ``BiTransformerDecoder``."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor

from speechforge_plugins.u2pp.attention_decoder import AttentionDecoder
from speechforge_plugins.u2pp.decoder_state import DecoderState
from speechforge_plugins.u2pp.transformer_decoder import TransformerDecoder


class BiTransformerDecoder(AttentionDecoder):
    """``left_decoder`` (``num_blocks``) reads tokens left to right, ``right_decoder``
    (``r_num_blocks``) reads them reversed; the right-to-left branch regularises training and
    adds its score in attention rescoring. Other keys as for ``transformer``."""

    bidirectional: ClassVar[bool] = True

    def __init__(
        self,
        *,
        vocab_size: int,
        encoder_dim: int,
        heads: int = 4,
        num_blocks: int = 3,
        r_num_blocks: int = 3,
        dropout: float = 0.1,
        pos_dropout: float = 0.1,
        ffn: Mapping[str, Any] | None = None,
        attention: Mapping[str, Any] | None = None,
        self_attention: Mapping[str, Any] | None = None,
        src_attention: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        shared = dict(
            vocab_size=vocab_size, encoder_dim=encoder_dim, heads=heads, dropout=dropout, pos_dropout=pos_dropout,
            ffn=ffn, attention=attention, self_attention=self_attention, src_attention=src_attention,
        )  # fmt: skip
        self.left_decoder = TransformerDecoder(num_blocks=num_blocks, **shared)
        self.right_decoder = TransformerDecoder(num_blocks=r_num_blocks, **shared)

    def forward(
        self,
        memory: Tensor,
        memory_mask: Tensor,
        ys_in: Tensor,
        ys_in_lens: Tensor,
        r_ys_in: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Args: memory (B, T, D), memory_mask (B, 1, T), ys_in and r_ys_in (N, U), ys_in_lens
        (N,). Returns logits (N, U, V) left to right and, with ``r_ys_in``, right to left."""
        logits, _ = self.left_decoder(memory, memory_mask, ys_in, ys_in_lens)
        if r_ys_in is None:
            return logits, None
        r_logits, _ = self.right_decoder(memory, memory_mask, r_ys_in, ys_in_lens)
        return logits, r_logits

    def step(
        self, memory: Tensor, memory_mask: Tensor, tokens: Tensor, state: DecoderState | None
    ) -> tuple[Tensor, DecoderState]:
        """The left-to-right decoder's step (autoregressive search reads left to right)."""
        return self.left_decoder.step(memory, memory_mask, tokens, state)
