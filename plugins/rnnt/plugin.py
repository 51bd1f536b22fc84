"""The rnnt plugin's hooks: its ``predictor`` and ``joiner`` kinds, the ``transducer`` decoder,
the ``rnnt`` and ``pruned_rnnt`` losses and the transducer searches; the ONNX layout of a
model with a transducer decoder (icefall's, for sherpa-onnx)."""
from __future__ import annotations

from torch import nn

from speechforge.deploy.onnx_exporter import OnnxExporter
from speechforge.hookspecs import hookimpl
from speechforge.registry import ComponentRegistry
from speechforge_plugins.rnnt.joiner import Joiner
from speechforge_plugins.rnnt.lstm_predictor import LSTMPredictor
from speechforge_plugins.rnnt.predictor import Predictor
from speechforge_plugins.rnnt.stateless_predictor import StatelessPredictor
from speechforge_plugins.rnnt.transducer_attention_rescoring import TransducerAttentionRescoring
from speechforge_plugins.rnnt.transducer_beam_search import TransducerBeamSearch
from speechforge_plugins.rnnt.transducer_decoder import TransducerDecoder
from speechforge_plugins.rnnt.transducer_greedy_search import TransducerGreedySearch
from speechforge_plugins.rnnt.transducer_losses import PrunedRNNTLoss, RNNTLoss
from speechforge_plugins.rnnt.transducer_modified_beam_search import TransducerModifiedBeamSearch
from speechforge_plugins.rnnt.transducer_onnx_exporter import TransducerOnnxExporter


@hookimpl
def register_components(registry: ComponentRegistry) -> None:
    registry.add_kind("predictor", Predictor, "transducer label-context networks")
    registry.add_kind("joiner", Joiner, "transducer joint networks")
    registry.register("predictor", "lstm", LSTMPredictor)
    registry.register("predictor", "stateless", StatelessPredictor)
    registry.register("joiner", "linear", Joiner)
    registry.register("decoder", "transducer", TransducerDecoder)
    registry.register("loss", "rnnt", RNNTLoss)
    registry.register("loss", "pruned_rnnt", PrunedRNNTLoss)
    registry.register("search", "transducer_greedy_search", TransducerGreedySearch)
    registry.register("search", "transducer_beam_search", TransducerBeamSearch)
    registry.register("search", "transducer_modified_beam_search", TransducerModifiedBeamSearch)
    registry.register("search", "transducer_attention_rescoring", TransducerAttentionRescoring)


@hookimpl
def onnx_exporter(model: nn.Module) -> OnnxExporter | None:
    """icefall's transducer layout for a model with a transducer decoder; None for any other."""
    if any(isinstance(module, TransducerDecoder) for module in model.modules()):
        return TransducerOnnxExporter()
    return None
