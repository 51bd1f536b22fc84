"""Whether the code runs under a graph exporter (``torch.onnx.export``, ``torch.jit.trace``,
``torch.export``): layers switch to ops whose shapes follow the input symbolically instead of
Python branches on tensor values, which an exporter would bake into the graph as constants."""
from __future__ import annotations

import torch


def is_exporting() -> bool:
    """True while a tracer or exporter records the current call."""
    return bool(torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting())
