"""An encoder made of Conv2d subsampling, positional encoding and a stack of registered
``encoder_block`` components. Conformer and Transformer encoders are this class with
different defaults."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from speechforge.errors import ConfigError
from speechforge.interfaces import Attention, Encoder
from speechforge.modules.mask import encoder_attention_mask, padding_mask
from speechforge.modules.positional_encoding import PositionalEncoding
from speechforge.modules.rel_positional_encoding import RelPositionalEncoding
from speechforge.modules.subsampling import Conv2dSubsampling
from speechforge.registry import build_component

POS_ENCODINGS = ("rel", "abs", "none")


class BlockStackEncoder(Encoder):
    """Subsampling → positional encoding → N blocks → LayerNorm.

    The encoder offers its blocks ``d_model``, ``heads``, ``ffn``, ``attention``, ``dropout``
    and ``causal``; block-specific keys go in the ``encoder_block`` mapping. Subclasses set the
    defaults of ``encoder_block``, ``attention`` and ``pos_enc``.
    """

    default_block: str
    default_attention: str
    default_pos_enc: str

    def __init__(
        self,
        *,
        input_dim: int,
        encoder_block: Mapping[str, Any] | None = None,
        attention: Mapping[str, Any] | None = None,
        pos_enc: str | None = None,
        ffn: Mapping[str, Any] | None = None,
        d_model: int = 256,
        heads: int = 4,
        num_blocks: int = 12,
        subsampling: int = 4,
        subsampling_channels: int = 0,
        dropout: float = 0.1,
        pos_dropout: float = 0.1,
        causal: bool = False,
    ) -> None:
        super().__init__()
        encoder_block = encoder_block if encoder_block is not None else {"type": self.default_block}
        attention = attention if attention is not None else {"type": self.default_attention}
        pos_enc = pos_enc if pos_enc is not None else self.default_pos_enc
        if pos_enc not in POS_ENCODINGS:
            raise ConfigError(f"pos_enc: must be one of {', '.join(POS_ENCODINGS)}, got {pos_enc!r}")
        ffn = ffn if ffn is not None else {"type": "dense"}
        self.output_dim = d_model
        self.embed = Conv2dSubsampling(input_dim, d_model, subsampling, subsampling_channels or d_model)
        self.subsampling_rate = subsampling
        self.pos_enc = {
            "rel": RelPositionalEncoding(d_model, pos_dropout),
            "abs": PositionalEncoding(d_model, pos_dropout),
            "none": None,
        }[pos_enc]
        self.blocks = nn.ModuleList(
            build_component(
                "encoder_block",
                encoder_block,
                "encoder_block",
                d_model=d_model,
                heads=heads,
                ffn=ffn,
                attention=attention,
                dropout=dropout,
                causal=causal,
            )
            for _ in range(num_blocks)
        )
        self.after_norm = nn.LayerNorm(d_model)
        self._check_positional_encoding(pos_enc)

    def _check_positional_encoding(self, pos_enc: str) -> None:
        for name, module in self.blocks.named_modules():
            if isinstance(module, Attention) and module.uses_relative_position and pos_enc != "rel":
                raise ConfigError(
                    f"pos_enc: {type(module).__name__} (blocks.{name}) needs relative positions; "
                    f"set pos_enc: rel, not {pos_enc!r}"
                )

    def forward(
        self, feats: Tensor, lengths: Tensor, chunk_size: int = 0, num_left_chunks: int = -1
    ) -> tuple[Tensor, Tensor]:
        """Args: feats (B, T, F), lengths (B,). Returns (B, T', D), lengths (B,)."""
        x, lengths = self.embed(feats, lengths)  # (B, T', D)
        pos_emb = None
        if self.pos_enc is not None:
            x, pos_emb = self.pos_enc(x)
        unpadded = bool((lengths == x.size(1)).all())
        pad_mask = None if unpadded else padding_mask(lengths, x.size(1)).unsqueeze(1)  # (B, 1, T')
        att_mask = pad_mask
        if chunk_size > 0:
            full = padding_mask(lengths, x.size(1)).unsqueeze(1)
            att_mask = encoder_attention_mask(full, chunk_size, num_left_chunks)  # (B, T', T')
        for block in self.blocks:
            x, _ = block(x, att_mask, pad_mask, pos_emb)
        return self.after_norm(x), lengths
