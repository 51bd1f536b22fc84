"""Conformer convolution module (Gulati et al., 2020): pointwise conv + GLU, depthwise conv,
norm, Swish, pointwise conv. Parameter names follow ESPnet's ``ConvolutionModule``."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechforge.modules.activation import make_activation


class ConformerConvolution(nn.Module):
    """With ``causal`` the depthwise conv sees only the past, so it can stream with a cache of
    the last ``kernel_size - 1`` frames; layer norm replaces batch norm there (no batch
    statistics across chunks)."""

    def __init__(
        self,
        d_model: int,
        kernel_size: int = 15,
        causal: bool = False,
        norm: str = "batch_norm",
        activation: str = "swish",
        bias: bool = True,
    ) -> None:
        super().__init__()
        if not causal and kernel_size % 2 == 0:
            raise ValueError(f"a non-causal conv needs an odd kernel_size, got {kernel_size}")
        if norm not in ("batch_norm", "layer_norm"):
            raise ValueError(f"conv norm must be batch_norm or layer_norm, got {norm!r}")
        self.causal = causal
        self.left_context = kernel_size - 1 if causal else 0
        self.pointwise_conv1 = nn.Conv1d(d_model, 2 * d_model, 1, bias=bias)
        self.depthwise_conv = nn.Conv1d(
            d_model,
            d_model,
            kernel_size,
            padding=0 if causal else (kernel_size - 1) // 2,
            groups=d_model,
            bias=bias,
        )
        self.norm = nn.BatchNorm1d(d_model) if norm == "batch_norm" else nn.LayerNorm(d_model)
        self.activation = make_activation(activation)
        self.pointwise_conv2 = nn.Conv1d(d_model, d_model, 1, bias=bias)

    def forward(
        self, x: Tensor, pad_mask: Tensor | None = None, cache: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Args:
            x: (B, T, D).
            pad_mask: (B, 1, T) bool, True = valid; padded frames are zeroed so that they
                never reach valid ones through the depthwise conv.
            cache: (B, D, kernel_size - 1) last input frames of the previous chunk (causal).
        Returns: (B, T, D) and the new cache (None when ``cache`` was None).
        """
        x = F.glu(self.pointwise_conv1(x.transpose(1, 2)), dim=1)  # (B, D, T)
        if pad_mask is not None:  # zero padded frames right before they could mix in time
            x = x.masked_fill(~pad_mask, 0.0)
        new_cache = None
        if self.causal:
            if cache is None:
                x = F.pad(x, (self.left_context, 0))
            else:
                x = torch.cat((cache, x), dim=2)
                new_cache = x[:, :, -self.left_context :]
        elif cache is not None:
            raise ValueError("a streaming cache needs a causal convolution (causal: true)")
        x = self.depthwise_conv(x)
        if isinstance(self.norm, nn.LayerNorm):
            x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        else:
            x = self.norm(x)
        x = self.pointwise_conv2(self.activation(x))
        if pad_mask is not None:
            x = x.masked_fill(~pad_mask, 0.0)
        return x.transpose(1, 2), new_cache
