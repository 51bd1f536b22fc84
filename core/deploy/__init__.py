"""Deployment: speechforge models as ONNX graphs in the layouts runtimes load (sherpa-onnx's
WeNet CTC models, offline and chunked streaming; plugins add layouts of their own through
:class:`~speechforge.deploy.onnx_exporter.OnnxExporter`, as the rnnt plugin does for icefall's
transducers). ``onnx`` and ``onnxruntime`` are needed only here, and imported only when an
export runs."""
