"""The CPU inference form of an ``nn.Conv1d`` (and of the activation that follows it), put in
place by :func:`speechforge.modules.inference_transform.optimize_for_cpu_inference`."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechforge.modules.fused_linear import fusable

_FUSED_CONV = hasattr(torch.ops.mkldnn, "_convolution_pointwise")
#: activations oneDNN applies in the convolution's epilogue, by their exact type
_EPILOGUES: dict[type, str] = {nn.SiLU: "swish", nn.ReLU: "relu"}


class ChannelsLastConv1d(nn.Module):
    """``activation(conv1d(x))`` computed as a channels-last Conv2d of height 1.

    oneDNN runs a depthwise convolution over a channels-last (B, C, 1, L) image several times
    faster than PyTorch runs a channels-first Conv1d (about 20x for the Conformer's and
    Mamba's depthwise shapes in fp32 inference), and applies a following SiLU or ReLU in the
    same pass. A (B, C, L) view of (B, L, C) memory is such an image without a copy, which is
    how the Mamba layer holds its activations. The module keeps the Conv1d's ``weight``
    (C_out, C_in / groups, K) and ``bias`` parameters under their names; where the fused kernel
    does not apply (a gradient is needed, not fp32, autocast, another device) it is the Conv1d
    followed by the activation.
    """

    def __init__(self, layer: nn.Conv1d, activation: nn.Module | None = None) -> None:
        """Args: layer: a plain zero-padded Conv1d (its parameters are shared); activation: the
        module that followed it, or None."""
        super().__init__()
        if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
            raise ValueError(f"ChannelsLastConv1d needs numeric zero padding, got {layer.padding!r}")
        self.weight, self.bias = layer.weight, layer.bias
        self.stride, self.padding, self.dilation = layer.stride[0], layer.padding[0], layer.dilation[0]
        self.groups = layer.groups
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (B, C_in, L), best a view of (B, L, C_in) memory. Returns (B, C_out, L'),
        a view of (B, L', C_out) memory on the fused path."""
        epilogue = _EPILOGUES.get(type(self.activation), "none" if self.activation is None else None)
        if _FUSED_CONV and epilogue is not None and x.dtype == torch.float32 and fusable(x, self.weight):
            y = torch.ops.mkldnn._convolution_pointwise(
                x.unsqueeze(2),  # (B, C_in, 1, L)
                self.weight.unsqueeze(2).contiguous(memory_format=torch.channels_last),  # (C_out, C_in/g, 1, K)
                self.bias,
                [0, self.padding],
                [1, self.stride],
                [1, self.dilation],
                self.groups,
                epilogue,
                [],
                "",
            )
            return y.squeeze(2)
        y = F.conv1d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return y if self.activation is None else self.activation(y)
