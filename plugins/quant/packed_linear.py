"""A linear layer that keeps its quantized weight packed and computes on it block by block."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from speechforge.errors import ConfigError
from speechforge_plugins.quant.packed_buffers import PackedBuffers, packed_parametrization
from speechforge_plugins.quant.packed_weight import PackedWeight

#: Weight elements unpacked to float at a time (16 MiB in float32): a few blocks of one layer,
#: never the whole float weight of a large layer.
UNPACK_BUDGET = 1 << 22


class PackedLinear(PackedBuffers):
    """``nn.Linear`` on a packed 1- or 2-bit weight (O, I) in blocks of ``W`` along I.

    The per-block scales are applied to the partial sums after the matmul, as the paper does at
    inference: with x_b (N, W) the inputs of block b and c_b (O, W) its codes,

        binary: y = sum_b s_b * (x_b @ (2 c_b - 1)^T)
        affine: y = sum_b s_b * (x_b @ c_b^T) + z_b * sum(x_b)

    (s_b, z_b (O,) broadcast over N), which equals ``F.linear(x, w_hat, bias)`` for the
    dequantized weight w_hat. Codes are unpacked a few blocks at a time (UNPACK_BUDGET).

    The constructor makes empty buffers of the right shapes and dtypes (like ``nn.Linear``;
    :class:`~speechforge_plugins.quant.packed_buffers.PackedBuffers`), so a packed state dict
    loads into it; :meth:`from_packed` and :meth:`from_parametrized` build one from a
    quantizer's output.

    Args:
        in_features: I.
        out_features: O.
        bits: 1 or 2.
        block_size: block width W along I; None for per-channel (W = I).
        scale_dtype: storage of the metadata, ``float32`` or ``int8``.
        zero_point: affine codes with a zero point; False for binary (sign) codes.
        bias: keep a float bias.
        device: where the empty buffers are made (``meta`` to fill them by assignment).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bits: int,
        block_size: int | None,
        scale_dtype: str = "float32",
        zero_point: bool = False,
        bias: bool = True,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(
            (out_features, in_features),
            bits=bits,
            block_size=block_size,
            scale_dtype=scale_dtype,
            zero_point=zero_point,
            device=device,
            name="PackedLinear",
        )
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("bias", torch.empty(out_features, device=device) if bias else None)

    @classmethod
    def from_packed(cls, packed: PackedWeight, bias: Tensor | None = None) -> PackedLinear:
        """A layer holding ``packed`` (an (O, I) weight) and ``bias`` (O,) as they are."""
        if len(packed.shape) != 2:
            raise ConfigError(f"PackedLinear takes an (O, I) weight, got shape {packed.shape}")
        out_features, in_features = packed.shape
        layer = cls(in_features, out_features, **cls.settings(packed), bias=bias is not None, device="meta")
        state = cls.state(packed) | ({} if bias is None else {"bias": bias.detach().float()})
        layer.load_state_dict(state, assign=True)
        return layer

    @classmethod
    def from_parametrized(cls, linear: nn.Linear) -> PackedLinear:
        """Packs an ``nn.Linear`` whose weight is parametrized by one WeightFakeQuantizer."""
        return cls.from_packed(packed_parametrization(linear, "weight"), linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(..., I) -> (..., O)."""
        inputs = x.reshape(-1, self.in_features).unflatten(-1, (-1, self.width))  # (N, NB, W)
        scale = self.metadata("scale", x.dtype).T  # (NB, O)
        zero_point = None if self.zero_point is None else self.metadata("zero_point", x.dtype).T
        out = inputs.new_zeros(inputs.shape[0], self.out_features)  # (N, O)
        step = max(1, UNPACK_BUDGET // (self.out_features * self.width))
        for start in range(0, inputs.shape[1], step):
            block_inputs = inputs[:, start : start + step]  # (N, k, W)
            codes = self.code_values(self.codes[:, start : start + step], x.dtype)  # (O, k, W)
            partial = torch.einsum("nkw,okw->nko", block_inputs, codes)  # (N, k, O)
            out += (partial * scale[start : start + step]).sum(1)
            if zero_point is not None:
                out += block_inputs.sum(-1) @ zero_point[start : start + step]  # (N, k) @ (k, O)
        if self.bias is not None:
            out += self.bias.to(x.dtype)
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, {super().extra_repr()}, "
            f"bias={self.bias is not None}"
        )
