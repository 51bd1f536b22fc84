"""Conformer convolution module (Gulati et al., 2020): pointwise conv + GLU, depthwise conv,
norm, Swish, pointwise conv. Parameter names follow ESPnet's ``ConvolutionModule``."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechforge.modules.activation import make_activation
from speechforge.modules.fused_linear import linear


class ConformerConvolution(nn.Module):
    """With ``causal`` the depthwise conv sees only the past, so it can stream with a cache of
    the last ``kernel_size - 1`` frames. Both norms stream: in inference batch norm is a fixed
    per-channel affine map (running statistics), layer norm works frame by frame. WeNet pairs
    causal convolution with layer norm; batch norm trained faster in our small recipe."""

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

    def initial_cache(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """Zero history before the first chunk: (B, D, kernel_size - 1).

        Raises: ValueError for a convolution that sees the future (``causal: false``), since
        chunk-by-chunk encoding could then never equal the chunk-masked forward.
        """
        if not self.causal:
            raise ValueError("a streaming cache needs a causal convolution (causal: true)")
        return torch.zeros(batch_size, self.pointwise_conv2.out_channels, self.left_context, device=device, dtype=dtype)

    def forward(
        self, x: Tensor, pad_mask: Tensor | None = None, cache: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Args:
            x: (B, T, D).
            pad_mask: (B, 1, T) bool, True = valid; padded frames are zeroed so that they
                never reach valid ones through the depthwise conv.
            cache: (B, D, kernel_size - 1) last input frames of the previous chunk (causal).
        Returns: (B, T, D) and the new cache (None when ``cache`` was None).

        Activations stay in (B, T, D) memory throughout; (B, D, T) tensors below are views of
        it. The pointwise convs run as matmuls with the same weights (a kernel-1 Conv1d takes
        PyTorch's slow generic path on a CPU; see :mod:`speechforge.modules.fused_linear`)
        and the depthwise conv as a channels-last Conv2d, which oneDNN runs several times
        faster than a channels-first Conv1d.
        """
        x = F.glu(linear(x, self.pointwise_conv1.weight.squeeze(-1), self.pointwise_conv1.bias), dim=-1)
        if pad_mask is not None:  # zero padded frames right before they could mix in time
            x = x.masked_fill(~pad_mask.transpose(1, 2), 0.0)
        new_cache = None
        if self.causal:
            if cache is None:
                x = F.pad(x, (0, 0, self.left_context, 0))
            else:
                x = torch.cat((cache.transpose(1, 2), x), dim=1)  # (B, K - 1 + T, D)
                new_cache = x[:, -self.left_context :].transpose(1, 2)  # (B, D, K - 1)
        elif cache is not None:
            raise ValueError("a streaming cache needs a causal convolution (causal: true)")
        x = self._depthwise(x)
        # Batch norm over (B·T, D) rows has the statistics of BatchNorm1d over (B, D, T).
        x = self.norm(x) if isinstance(self.norm, nn.LayerNorm) else self.norm(x.flatten(0, 1)).view_as(x)
        x = linear(self.activation(x), self.pointwise_conv2.weight.squeeze(-1), self.pointwise_conv2.bias)
        if pad_mask is not None:
            x = x.masked_fill(~pad_mask.transpose(1, 2), 0.0)
        return x, new_cache

    def _depthwise(self, x: Tensor) -> Tensor:
        """Depthwise conv (B, T', D) -> (B, T, D) in the weights' dtype, outside CPU autocast.

        Under CPU autocast oneDNN picks its bf16 ``brdgmm`` kernel, whose JIT generation runs
        for minutes on some shapes (e.g. batch 3 x 1340 frames); in fp32 the op is cheap.
        """
        weight = self.depthwise_conv.weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", enabled=False):  # a no-op outside CPU autocast
            return F.conv2d(
                x.to(weight.dtype).transpose(1, 2).unsqueeze(2),  # (B, D, 1, T) channels-last view
                weight,  # (D, 1, 1, K)
                self.depthwise_conv.bias,
                padding=(0, self.depthwise_conv.padding[0]),
                groups=self.depthwise_conv.groups,
            ).squeeze(2).transpose(1, 2)  # (B, T, D), contiguous
