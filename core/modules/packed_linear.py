"""The CPU inference form of an ``nn.Linear`` (and of the activation that follows it), put in
place by :func:`speechforge.modules.inference_transform.optimize_for_cpu_inference`."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechforge.modules.fused_linear import WeightPacker, fusable, linear


class PackedLinear(nn.Module):
    """``activation(x @ weight.T + bias)`` on oneDNN with the weight kept in its blocked layout.

    It holds the ``nn.Linear``'s own ``weight`` and ``bias`` parameters under the same names
    (the state dict is unchanged) and a reordered copy of the weight made on the first fused
    call; the copy is made again when the weight changes (new storage, an in-place update, a
    new dtype), so loading other weights into a transformed model stays correct. Where
    :func:`~speechforge.modules.fused_linear.fusable` says no (a gradient is needed, autocast,
    another device, :func:`~speechforge.modules.fused_linear.plain_kernels`) it computes
    ``F.linear`` and the activation, the layer it replaced.
    """

    def __init__(self, layer: nn.Linear, activation: nn.Module | None = None) -> None:
        """Args: layer: the plain linear (its parameters are shared, not copied); activation:
        the module that followed it (fused into the matmul when ReLU, SiLU or GELU), or None."""
        super().__init__()
        self.in_features, self.out_features = layer.in_features, layer.out_features
        self.weight = layer.weight
        self.bias = layer.bias
        self.activation = activation
        self._packer = WeightPacker()

    def prepack(self, rows_hint: int) -> None:
        """Make the reordered copy now (the transform does, so that a first call does not pay
        for it) for calls of about ``rows_hint`` rows; a no-op where no fused kernel applies."""
        with torch.no_grad():
            self._packer.pack(self.weight.new_zeros(1, self.in_features), (self.weight,), rows_hint)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (..., in_features). Returns (..., out_features)."""
        if fusable(x, self.weight):
            packed = self._packer.pack(x, (self.weight,), x.numel() // max(x.size(-1), 1))
            weight = self.weight if packed is None else packed[0]
            return linear(x, weight, self.bias, self.activation)
        y = F.linear(x, self.weight, self.bias)
        return y if self.activation is None else self.activation(y)

    def train(self, mode: bool = True) -> PackedLinear:
        if mode:
            self._packer.release()
        return super().train(mode)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
