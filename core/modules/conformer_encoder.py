"""Conformer encoder (Gulati et al., 2020), registered as ``encoder`` ``conformer``."""
from __future__ import annotations

from speechforge.modules.block_stack_encoder import BlockStackEncoder


class ConformerEncoder(BlockStackEncoder):
    """Conformer blocks with relative-position self-attention by default.

    Keys: ``d_model``, ``heads``, ``num_blocks``, ``subsampling`` (4, 6, 8), ``subsampling_channels``,
    ``subsampling_norm`` (none, layer_norm: after each subsampling conv), ``dropout``, ``pos_dropout``, ``causal``, ``pos_enc`` (rel, abs, none), ``ffn``, ``attention`` and
    ``encoder_block`` (e.g. ``{type: conformer, conv_kernel: 31}``).
    """

    default_block = "conformer"
    default_attention = "rel_mha"
    default_pos_enc = "rel"
