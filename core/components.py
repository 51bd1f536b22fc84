"""Core's own components, registered through the same hook every plugin implements."""
from __future__ import annotations

from speechforge.asr_model import ASRModel
from speechforge.decode.ctc_greedy_search import CTCGreedySearch
from speechforge.decode.ctc_prefix_beam_search import ctc_prefix_beam_search, ctc_prefix_beam_search_lm
from speechforge.hookspecs import hookimpl
from speechforge.modules.conformer_block import ConformerBlock
from speechforge.modules.conformer_encoder import ConformerEncoder
from speechforge.modules.ctc_loss import CTCLoss
from speechforge.modules.fbank_frontend import FbankFrontend
from speechforge.modules.local_multi_head_attention import LocalMultiHeadAttention
from speechforge.modules.feed_forward import PositionwiseFeedForward
from speechforge.modules.multi_head_attention import MultiHeadAttention
from speechforge.modules.rel_multi_head_attention import RelPositionMultiHeadAttention
from speechforge.modules.transformer_block import TransformerBlock
from speechforge.modules.transformer_encoder import TransformerEncoder
from speechforge.registry import ComponentRegistry


@hookimpl
def register_components(registry: ComponentRegistry) -> None:
    registry.register("frontend", "fbank", FbankFrontend)
    registry.register("ffn", "dense", PositionwiseFeedForward)
    registry.register("attention", "mha", MultiHeadAttention)
    registry.register("attention", "rel_mha", RelPositionMultiHeadAttention)
    registry.register("attention", "local_mha", LocalMultiHeadAttention)
    registry.register("encoder_block", "conformer", ConformerBlock)
    registry.register("encoder_block", "transformer", TransformerBlock)
    registry.register("encoder", "conformer", ConformerEncoder)
    registry.register("encoder", "transformer", TransformerEncoder)
    registry.register("loss", "ctc", CTCLoss)
    registry.register("task", "asr", ASRModel)
    registry.register("search", "ctc_greedy_search", CTCGreedySearch)
    registry.register("search", "ctc_prefix_beam_search", ctc_prefix_beam_search)
    registry.register("search", "ctc_prefix_beam_search_lm", ctc_prefix_beam_search_lm)
