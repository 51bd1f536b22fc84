"""The U2++ plugin's hook: its decoders, loss and searches."""
from __future__ import annotations

from speechforge.hookspecs import hookimpl
from speechforge.registry import ComponentRegistry
from speechforge_plugins.u2pp.attention_beam_search import AttentionBeamSearch
from speechforge_plugins.u2pp.attention_loss import AttentionLoss
from speechforge_plugins.u2pp.attention_rescoring import AttentionRescoring, AttentionRescoringLM
from speechforge_plugins.u2pp.bi_transformer_decoder import BiTransformerDecoder
from speechforge_plugins.u2pp.transformer_decoder import TransformerDecoder


@hookimpl
def register_components(registry: ComponentRegistry) -> None:
    registry.register("decoder", "transformer", TransformerDecoder)
    registry.register("decoder", "bitransformer", BiTransformerDecoder)
    registry.register("loss", "attention", AttentionLoss)
    registry.register("search", "attention", AttentionBeamSearch)
    registry.register("search", "attention_rescoring", AttentionRescoring)
    registry.register("search", "attention_rescoring_lm", AttentionRescoringLM)
