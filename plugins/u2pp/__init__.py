"""U2++ plugin (Wu et al., 2021): Transformer and bidirectional attention decoders, the
label-smoothed ``attention`` loss, and the ``attention`` and ``attention_rescoring`` searches.
Dynamic chunk training and chunk-by-chunk streaming live in core's encoder
(:class:`speechforge.modules.block_stack_encoder.BlockStackEncoder`)."""
from speechforge_plugins.u2pp.plugin import register_components

__all__ = ["register_components"]
