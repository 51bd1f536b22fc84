"""RNN-T plugin: the ``transducer`` decoder (``predictor`` and ``joiner`` kinds of its own), the
full transducer loss ``rnnt`` (native and torchaudio backends) and k2's pruned RNN-T loss
``pruned_rnnt`` written in PyTorch (optional backend on the real k2, icefall's warm-up),
greedy, beam, modified-beam (all streaming) and attention-rescoring searches, and icefall's
ONNX layout of a transducer for sherpa-onnx (docs/plugins/rnnt.md)."""
from speechforge_plugins.rnnt.plugin import onnx_exporter, register_components

__all__ = ["onnx_exporter", "register_components"]
