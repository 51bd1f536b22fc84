"""Writing one ONNX graph the way every speechforge layout does: traced with the TorchScript
exporter, checked in onnxruntime at a shape it was not traced at, metadata for the runtime,
and an optional int8 copy.

The graphs are traced with ``dynamo=False``, as WeNet and icefall export: layers take their
export-friendly forms under :func:`~speechforge.modules.export_mode.is_exporting`. The check
after tracing makes a layer whose loop or branch was frozen into the graph fail the export
instead of the deployment.
"""
from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor, nn

from speechforge.errors import ConfigError

OPSET = 17
#: onnxruntime vs PyTorch at an untraced shape; beyond it the graph did not follow the input
CHECK_TOLERANCE = 1e-3


@contextmanager
def replaced_atomically(path: Path) -> Iterator[str]:
    """A temporary file beside ``path`` to write, renamed over ``path`` when the block ends
    without error and removed when it fails, so a reader never sees half a graph. The file is
    made readable by everyone (mkstemp's 0600 is not what a deployment ships)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o644)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def trace_to_onnx(
    graph: nn.Module,
    example: tuple[Tensor, ...],
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]],
) -> None:
    """``torch.onnx.export`` (TorchScript tracer) to a temporary file renamed over ``path``.

    ``graph`` is put in eval mode first: the exporter restores the mode it found, and a fresh
    wrapper's training mode would switch the model's dropout on for good.
    """
    graph.eval()
    with replaced_atomically(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter's notice
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks seen as constants
        torch.onnx.export(
            graph,
            example,
            tmp,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes={name: dict(axes) for name, axes in dynamic_axes.items()},
            opset_version=OPSET,
            dynamo=False,
        )


def check_follows_input(graph: nn.Module, path: Path, inputs: tuple[Tensor, ...]) -> None:
    """Run ``path`` in onnxruntime on ``inputs`` (shapes it was not traced at) and compare with
    PyTorch. Raises: ConfigError naming the largest difference when they disagree."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    if len(names) != len(inputs):
        raise ConfigError(f"{path.name}: the exported graph has inputs {names}; the layout needs {len(inputs)}")
    try:
        got = session.run(None, {name: tensor.numpy() for name, tensor in zip(names, inputs)})
    except Exception as error:  # onnxruntime raises its own Fail/InvalidArgument types
        raise ConfigError(f"{path.name}: the exported graph fails on another input length: {error}") from None
    with torch.no_grad():
        want = graph(*inputs)
    if isinstance(want, Tensor):  # a graph of one output
        want = (want,)
    for name, ours, theirs in zip(session.get_outputs(), want, got):
        if tuple(ours.shape) != theirs.shape:
            raise ConfigError(f"{path.name}: output {name.name} has shape {theirs.shape}, PyTorch {tuple(ours.shape)}")
        diff = (ours.double() - torch.from_numpy(theirs).double()).abs().max().item() if ours.numel() else 0.0
        if diff > CHECK_TOLERANCE:
            raise ConfigError(
                f"{path.name}: output {name.name} differs from PyTorch by {diff:.3g} at an untraced length; "
                f"a layer's loop or branch was frozen into the graph"
            )


def add_metadata(path: Path, meta: Mapping[str, object]) -> None:
    """Set ``meta`` as the graph's metadata properties (sherpa-onnx reads them as strings)."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    with replaced_atomically(path) as tmp:
        onnx.save(model, tmp)


def quantize_int8(source: Path, target: Path, meta: Mapping[str, object]) -> Path:
    """onnxruntime's dynamic quantization of ``source`` (int8 weights of every MatMul, the
    activations quantized per call), with ``meta`` set again."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))  # the quantizer logs a line per tensor to the root logger
    try:
        with replaced_atomically(target) as tmp:
            quantize_dynamic(str(source), tmp, op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    add_metadata(target, meta)
    return target
