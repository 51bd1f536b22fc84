"""Linear kernels with the bias and activation fused into one oneDNN call for CPU inference.

Model code does not call these: it calls its ``nn.Linear`` layers. The inference forms that
:func:`speechforge.modules.inference_transform.optimize_for_cpu_inference` puts in their place
(:class:`~speechforge.modules.packed_linear.PackedLinear`, the MoE layer's packed experts) do.

``F.linear`` on a CPU is MKL's GEMM after a copy of the bias into the output, and an
activation is one more pass over it. When no gradient is needed, :func:`linear` calls instead
``torch.ops.mkldnn._linear_pointwise`` (the kernel TorchInductor emits for CPU linears): one
oneDNN matmul whose epilogue adds the bias and applies ReLU/SiLU/GELU. On the Conformer's
shapes a dense FFN runs about 20 % faster, and the result equals the plain ops up to float
rounding (~1e-6). It has no backward, so training keeps ``F.linear``; so do autocast, which
would not see the op, ``torch.compile``, which fuses on its own, and non-CPU devices.

Given a plain weight, oneDNN reorders it into its blocked layout on every call; for a few rows
(an MoE expert's share of an utterance) that reorder costs a good part of the matmul.
:class:`WeightPacker` keeps reordered copies for repeated inference calls.

:func:`plain_kernels` turns the fused path off, e.g. to compare against it.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
_PREPACK = _ONEDNN and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
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


def fusable(x: Tensor, weight: Tensor) -> bool:
    """Whether a fused oneDNN inference kernel may serve ``x`` and ``weight``: CPU, fp32 or
    bf16 alike, no gradient needed, no autocast, not being compiled, not :func:`plain_kernels`."""
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
    if fusable(x, weight):
        epilogue = _onednn_epilogue(activation)
        if epilogue is not None:
            attr, algorithm = epilogue
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, attr, [], algorithm)
        return activation(torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], ""))
    y = F.linear(x, weight, bias)
    return y if activation is None else activation(y)


#: a packed (O, I) weight, the packed slices of an (E, O, I) stack, or None for an absent weight
Packed = Tensor | list[Tensor] | None


class WeightPacker:
    """oneDNN-layout copies of a module's weights for :func:`linear` in CPU inference.

    :meth:`pack` reorders the weights once and hands the copies back on later calls until any
    weight changes (new storage, an in-place update such as an optimizer step or
    ``load_state_dict``, a new dtype), when it reorders them again. The copies cost the weights'
    memory once more; :meth:`release` frees them (e.g. when the module goes back to training).
    """

    def __init__(self) -> None:
        self._key: list[tuple[object, ...]] | None = None
        self._packed: list[Packed] = []

    def pack(self, x: Tensor, weights: Sequence[Tensor | None], rows_hint: int) -> list[Packed] | None:
        """The weights in oneDNN's layout, or None when :func:`linear` would not take the fused
        path for ``x`` (gradients, autocast, another device or dtype, an inference tensor): then
        the caller keeps the plain weights.

        Args:
            x: the input that the weights will meet.
            weights: (O, I) weights, packed as one tensor, or (E, O, I) stacks, packed as a list
                of E tensors; None entries stay None.
            rows_hint: about how many rows of ``x`` each call will have (oneDNN's layout choice).
        """
        present = [w for w in weights if w is not None]
        if not (_PREPACK and present and all(fusable(x, w) and not w.is_inference() for w in present)):
            return None
        key = [None if w is None else (w.data_ptr(), w._version, w.dtype, tuple(w.shape)) for w in weights]
        if key != self._key:
            self._packed = [_reorder(w, rows_hint) for w in weights]
            self._key = key
        return self._packed

    def release(self) -> None:
        """Drop the copies; the next :meth:`pack` makes new ones."""
        self._key, self._packed = None, []


def _reorder(weight: Tensor | None, rows_hint: int) -> Packed:
    if weight is None:
        return None
    if weight.dim() == 3:
        return [torch.ops.mkldnn._reorder_linear_weight(w, rows_hint) for w in weight.detach()]
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), rows_hint)
