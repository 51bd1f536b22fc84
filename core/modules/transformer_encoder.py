"""Transformer encoder, registered as ``encoder`` ``transformer``."""
from __future__ import annotations

from speechforge.modules.block_stack_encoder import BlockStackEncoder


class TransformerEncoder(BlockStackEncoder):
    """Transformer blocks with absolute positional encoding by default; same keys as
    :class:`~speechforge.modules.conformer_encoder.ConformerEncoder`."""

    default_block = "transformer"
    default_attention = "mha"
    default_pos_enc = "abs"
