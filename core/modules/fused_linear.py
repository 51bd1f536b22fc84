"""Linear layers with the bias and activation fused into one oneDNN call for CPU inference.

``F.linear`` on a CPU is MKL's GEMM after a copy of the bias into the output, and an
activation is one more pass over it. When no gradient is needed, :func:`linear` calls instead
``torch.ops.mkldnn._linear_pointwise`` (the kernel TorchInductor emits for CPU linears): one
oneDNN matmul whose epilogue adds the bias and applies ReLU/SiLU/GELU. On the Conformer's
shapes a dense FFN runs about 20 % faster, and the result equals the plain ops up to float
rounding (~1e-6). It has no backward, so training keeps ``F.linear``; so do autocast, which
would not see the op, ``torch.compile``, which fuses on its own, and non-CPU devices.

:func:`plain_kernels` turns the fused path off, e.g. to compare against it.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
_enabled = True


@contextlib.contextmanager
def plain_kernels() -> Iterator[None]:
    """Within the block, :func:`linear` is ``F.linear`` followed by the activation module."""
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous


def _onednn_epilogue(activation: nn.Module | None) -> tuple[str, str] | None:
    """oneDNN's (attr, algorithm) for ``activation``, or None when it cannot be fused."""
    if activation is None:
        return "none", ""
    if type(activation) is nn.SiLU:
        return "swish", ""
    if type(activation) is nn.ReLU:
        return "relu", ""
    if type(activation) is nn.GELU:
        return "gelu", activation.approximate
    return None


def _fusable(x: Tensor, weight: Tensor) -> bool:
    return (
        _ONEDNN
        and _enabled
        and x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16)
        and weight.dtype == x.dtype
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
    )


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: nn.Module | None = None) -> Tensor:
    """``activation(x @ weight.T + bias)``.

    Args:
        x: (..., in_features).
        weight: (out_features, in_features); bias: (out_features,) or None.
        activation: applied to the result (fused when it is ReLU, SiLU or GELU), or None.
    Returns: (..., out_features).
    """
    if _fusable(x, weight):
        epilogue = _onednn_epilogue(activation)
        if epilogue is not None:
            attr, algorithm = epilogue
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, attr, [], algorithm)
        return activation(torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], ""))
    y = F.linear(x, weight, bias)
    return y if activation is None else activation(y)
