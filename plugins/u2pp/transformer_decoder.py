"""Transformer attention decoder (Vaswani et al., 2017) as U2/U2++ use it, registered as
``decoder`` ``transformer``. Parameter names follow WeNet's ``TransformerDecoder``."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from speechforge.errors import ConfigError
from speechforge.modules.mask import padding_mask
from speechforge.modules.positional_encoding import PositionalEncoding
from speechforge_plugins.u2pp.attention_decoder import AttentionDecoder
from speechforge_plugins.u2pp.decoder_block import DecoderBlock
from speechforge_plugins.u2pp.decoder_state import DecoderState

DEFAULT_FFN = {"type": "dense", "hidden": 2048, "activation": "relu"}
DEFAULT_ATTENTION = {"type": "mha"}


class TransformerDecoder(AttentionDecoder):
    """Token embedding + absolute positions → N pre-norm blocks → LayerNorm → vocabulary.

    The model width is the encoder's (``encoder_dim``). Keys: ``heads``, ``num_blocks``,
    ``dropout``, ``pos_dropout``, ``ffn`` (default dense, 2048, ReLU as in WeNet),
    ``attention`` (both attentions, default ``mha``), ``self_attention`` and
    ``src_attention`` (each overrides ``attention`` for its role).
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        encoder_dim: int,
        heads: int = 4,
        num_blocks: int = 6,
        dropout: float = 0.1,
        pos_dropout: float = 0.1,
        ffn: Mapping[str, Any] | None = None,
        attention: Mapping[str, Any] | None = None,
        self_attention: Mapping[str, Any] | None = None,
        src_attention: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if num_blocks < 0:
            raise ConfigError(f"decoder.num_blocks: must be >= 0, got {num_blocks}")
        if encoder_dim % heads:
            raise ConfigError(f"decoder.heads: {heads} does not divide the encoder's width {encoder_dim}")
        attention = attention if attention is not None else DEFAULT_ATTENTION
        self.heads = heads
        self.d_model = encoder_dim
        self.embed = nn.Embedding(vocab_size, encoder_dim)
        self.pos_enc = PositionalEncoding(encoder_dim, pos_dropout)
        self.decoders = nn.ModuleList(
            DecoderBlock(
                d_model=encoder_dim,
                heads=heads,
                self_attention=self_attention if self_attention is not None else attention,
                src_attention=src_attention if src_attention is not None else attention,
                ffn=ffn if ffn is not None else DEFAULT_FFN,
                dropout=dropout,
            )
            for _ in range(num_blocks)
        )
        self.after_norm = nn.LayerNorm(encoder_dim)
        self.output_layer = nn.Linear(encoder_dim, vocab_size)

    def forward(
        self,
        memory: Tensor,
        memory_mask: Tensor,
        ys_in: Tensor,
        ys_in_lens: Tensor,
        r_ys_in: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Args: memory (B, T, D), memory_mask (B, 1, T), ys_in (N, U), ys_in_lens (N,);
        ``r_ys_in`` must be None (no right-to-left branch). Returns logits (N, U, V), None."""
        if r_ys_in is not None:
            raise ValueError("the transformer decoder has no right-to-left branch; use bitransformer")
        size = ys_in.size(1)
        causal = torch.ones(size, size, dtype=torch.bool, device=ys_in.device).tril()
        tgt_mask = padding_mask(ys_in_lens, size).unsqueeze(1) & causal  # (N, U, U)
        x, _ = self.pos_enc(self.embed(ys_in))  # (N, U, D)
        for block in self.decoders:
            x, _ = block(x, tgt_mask, memory, memory_mask)
        return self.output_layer(self.after_norm(x)), None

    def step(
        self, memory: Tensor, memory_mask: Tensor, tokens: Tensor, state: DecoderState | None
    ) -> tuple[Tensor, DecoderState]:
        """Args: memory (B, T, D), memory_mask (B, 1, T), tokens (N,). Returns (N, V) log-probs."""
        length = 0 if state is None else state.length
        x, _ = self.pos_enc(self.embed(tokens.unsqueeze(1)), offset=length)  # (N, 1, D)
        caches = []
        for i, block in enumerate(self.decoders):
            cache = x.new_zeros(x.size(0), self.heads, 0, 2 * self.d_model // self.heads) if state is None else state.caches[i]
            x, cache = block(x, None, memory, memory_mask, cache)
            caches.append(cache)
        logits = self.output_layer(self.after_norm(x[:, -1]))  # (N, V)
        return torch.log_softmax(logits.float(), dim=-1), DecoderState(caches, length + 1)
