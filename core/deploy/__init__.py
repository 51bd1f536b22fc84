"""Deployment: speechforge models as ONNX graphs in the layouts runtimes load (sherpa-onnx's
WeNet CTC models, offline and chunked streaming). ``onnx`` and ``onnxruntime`` are needed only
here, and imported only when an export runs."""
