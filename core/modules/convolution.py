"""Conformer convolution module (Gulati et al., 2020): pointwise conv + GLU, depthwise conv,
norm, Swish, pointwise conv. Parameter names follow ESPnet's ``ConvolutionModule``.

Activations stay in (B, T, D) memory throughout, and the layers are the plain torch layers
that compute each step fastest on that layout, forward and backward: the pointwise
convolutions are ``nn.Linear`` layers (a kernel-1 Conv1d takes PyTorch's slow generic path on
a CPU) and the depthwise convolution an ``nn.Conv2d`` of kernel (1, K) over the channels-last
(B, D, 1, T) view of the activations, which oneDNN runs many times faster than a
channels-first Conv1d. Checkpoints of the Conv1d layout, weights (O, I, 1) and (D, 1, K) as
ESPnet and older speechforge store them, load through a state-dict pre-hook.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechforge.modules.activation import make_activation


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
        self.pointwise_conv1 = nn.Linear(d_model, 2 * d_model, bias=bias)
        self.depthwise_conv = nn.Conv2d(
            d_model,
            d_model,
            (1, kernel_size),
            padding=(0, 0 if causal else (kernel_size - 1) // 2),
            groups=d_model,
            bias=bias,
        )
        self.norm = nn.BatchNorm1d(d_model) if norm == "batch_norm" else nn.LayerNorm(d_model)
        self.activation = make_activation(activation)
        self.pointwise_conv2 = nn.Linear(d_model, d_model, bias=bias)
        self._register_load_state_dict_pre_hook(from_conv1d_layout)

    def initial_cache(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """Zero history before the first chunk: (B, D, kernel_size - 1).

        Raises: ValueError for a convolution that sees the future (``causal: false``), since
        chunk-by-chunk encoding could then never equal the chunk-masked forward.
        """
        if not self.causal:
            raise ValueError("a streaming cache needs a causal convolution (causal: true)")
        return torch.zeros(batch_size, self.pointwise_conv2.out_features, self.left_context, device=device, dtype=dtype)

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
        x = F.glu(self.pointwise_conv1(x), dim=-1)  # (B, T, D)
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
        x = self.pointwise_conv2(self.activation(x))
        if pad_mask is not None:
            x = x.masked_fill(~pad_mask.transpose(1, 2), 0.0)
        return x, new_cache

    def _depthwise(self, x: Tensor) -> Tensor:
        """Depthwise conv (B, T', D) -> (B, T, D) in the layer's dtype, outside CPU autocast.

        Under CPU autocast oneDNN picks its bf16 ``brdgmm`` kernel, whose JIT generation runs
        for minutes on some shapes (e.g. batch 3 x 1340 frames); in fp32 the op is cheap.
        """
        dtype = next(self.depthwise_conv.parameters()).dtype
        with torch.autocast("cpu", enabled=False):  # a no-op outside CPU autocast
            image = x.to(dtype).transpose(1, 2).unsqueeze(2)  # (B, D, 1, T') channels-last view
            return self.depthwise_conv(image).squeeze(2).transpose(1, 2)  # (B, T, D), contiguous


def from_conv1d_layout(
    state_dict: dict[str, Tensor], prefix: str, local_metadata: dict, strict: bool, *args: object
) -> None:
    """Load-state-dict pre-hook: Conv1d weights, pointwise (O, I, 1) and depthwise (D, 1, K),
    become the ``nn.Linear`` (O, I) and ``nn.Conv2d`` (D, 1, 1, K) weights."""
    for name in ("pointwise_conv1", "pointwise_conv2"):
        weight = state_dict.get(f"{prefix}{name}.weight")
        if weight is not None and weight.dim() == 3:
            state_dict[f"{prefix}{name}.weight"] = weight.squeeze(-1)
    weight = state_dict.get(f"{prefix}depthwise_conv.weight")
    if weight is not None and weight.dim() == 3:
        state_dict[f"{prefix}depthwise_conv.weight"] = weight.unsqueeze(2)
