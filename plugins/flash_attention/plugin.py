"""The FlashAttention plugin's hook: the ``flash`` attention component."""
from __future__ import annotations

from speechforge.hookspecs import hookimpl
from speechforge.registry import ComponentRegistry
from speechforge_plugins.flash_attention.flash_attention import FlashAttention
from speechforge_plugins.flash_attention.rel_position_flash_attention import RelPositionFlashAttention


def build_flash_attention(
    *,
    d_model: int,
    heads: int,
    dropout: float = 0.0,
    bias: bool = True,
    relative: bool = False,
    query_block: int = 256,
) -> FlashAttention:
    """The ``flash`` component: like ``mha``, or like ``rel_mha`` with ``relative: true``.

    Args:
        d_model, heads: from the block (context).
        dropout: attention-probability dropout in training.
        bias: biases on the Q/K/V/output projections.
        relative: Transformer-XL relative-position scores (needs ``pos_enc: rel``).
        query_block: query rows per SDPA call when a chunk mask, a position bias or CPU
            dropout would otherwise make SDPA hold (B, H, Tq, Tk) scores.
    """
    attention = RelPositionFlashAttention if relative else FlashAttention
    return attention(d_model=d_model, heads=heads, dropout=dropout, bias=bias, query_block=query_block)


@hookimpl
def register_components(registry: ComponentRegistry) -> None:
    registry.register("attention", "flash", build_flash_attention)
