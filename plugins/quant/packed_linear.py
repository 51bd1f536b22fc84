"""A linear layer that keeps its quantized weight packed and computes on it block by block."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from speechforge.errors import ConfigError
from speechforge_plugins.quant.bit_packing import packed_length, unpack_bits
from speechforge_plugins.quant.blocks import block_width
from speechforge_plugins.quant.metadata_codec import check_metadata_dtype, int8_decode
from speechforge_plugins.quant.packed_weight import PackedWeight
from speechforge_plugins.quant.weight_fake_quantizer import WeightFakeQuantizer

#: Weight elements unpacked to float at a time (16 MiB in float32): a few blocks of one layer,
#: never the whole float weight of a large layer.
UNPACK_BUDGET = 1 << 22


class PackedLinear(nn.Module):
    """``nn.Linear`` on a packed 1- or 2-bit weight (O, I) in blocks of ``W`` along I.

    The per-block scales are applied to the partial sums after the matmul, as the paper does at
    inference: with x_b (N, W) the inputs of block b and c_b (O, W) its codes,

        binary: y = sum_b s_b * (x_b @ (2 c_b - 1)^T)
        affine: y = sum_b s_b * (x_b @ c_b^T) + z_b * sum(x_b)

    (s_b, z_b (O,) broadcast over N), which equals ``F.linear(x, w_hat, bias)`` for the
    dequantized weight w_hat. Codes are unpacked a few blocks at a time (UNPACK_BUDGET).

    The constructor makes empty buffers of the right shapes and dtypes (like ``nn.Linear``), so
    a packed state dict loads into it; :meth:`from_packed` and :meth:`from_parametrized` build
    one from a quantizer's output.

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
        super().__init__()
        self.in_features, self.out_features, self.bits = in_features, out_features, bits
        self.width = block_width((out_features, in_features), block_size, "PackedLinear")
        self.scale_dtype = check_metadata_dtype(scale_dtype, "PackedLinear")
        blocks = in_features // self.width
        meta_dtype = torch.float32 if scale_dtype == "float32" else torch.int8
        code_bytes = packed_length(self.width, bits)
        self.register_buffer("codes", torch.empty(out_features, blocks, code_bytes, dtype=torch.uint8, device=device))
        for meta, wanted in (("scale", True), ("zero_point", zero_point)):
            values = torch.empty(out_features, blocks, dtype=meta_dtype, device=device) if wanted else None
            self.register_buffer(meta, values)
            step_wanted = wanted and scale_dtype == "int8"
            self.register_buffer(f"{meta}_step", torch.empty((), device=device) if step_wanted else None)
        self.register_buffer("bias", torch.empty(out_features, device=device) if bias else None)

    @classmethod
    def from_packed(cls, packed: PackedWeight, bias: Tensor | None = None) -> PackedLinear:
        """A layer holding ``packed`` (an (O, I) weight) and ``bias`` (O,) as they are."""
        if len(packed.shape) != 2:
            raise ConfigError(f"PackedLinear takes an (O, I) weight, got shape {packed.shape}")
        out_features, in_features = packed.shape
        layer = cls(
            in_features,
            out_features,
            bits=packed.bits,
            block_size=packed.width,
            scale_dtype="float32" if packed.scale_step is None else "int8",
            zero_point=packed.zero_point is not None,
            bias=bias is not None,
            device="meta",
        )
        tensors = {
            "codes": packed.codes,
            "scale": packed.scale,
            "scale_step": packed.scale_step,
            "zero_point": packed.zero_point,
            "zero_point_step": packed.zero_point_step,
            "bias": None if bias is None else bias.detach().float(),
        }
        layer.load_state_dict({key: value for key, value in tensors.items() if value is not None}, assign=True)
        return layer

    @classmethod
    def from_parametrized(cls, linear: nn.Linear) -> PackedLinear:
        """Packs an ``nn.Linear`` whose weight is parametrized by one WeightFakeQuantizer."""
        quantizers = linear.parametrizations.weight if parametrize.is_parametrized(linear, "weight") else []
        if len(quantizers) != 1 or not isinstance(quantizers[0], WeightFakeQuantizer):
            raise ConfigError(
                f"PackedLinear.from_parametrized needs a linear whose weight has exactly one fake "
                f"quantizer, got parametrizations {[type(p).__name__ for p in quantizers]}"
            )
        return cls.from_packed(quantizers[0].pack(linear.parametrizations.weight.original), linear.bias)

    def _metadata(self, name: str, dtype: torch.dtype) -> Tensor:
        """The (O, NB) metadata buffer ``name`` as float values."""
        values = getattr(self, name)
        step = getattr(self, f"{name}_step")
        return (values.float() if step is None else int8_decode(values, step)).to(dtype)

    def forward(self, x: Tensor) -> Tensor:
        """(..., I) -> (..., O)."""
        inputs = x.reshape(-1, self.in_features).unflatten(-1, (-1, self.width))  # (N, NB, W)
        scale = self._metadata("scale", x.dtype).T  # (NB, O)
        zero_point = None if self.zero_point is None else self._metadata("zero_point", x.dtype).T
        out = inputs.new_zeros(inputs.shape[0], self.out_features)  # (N, O)
        step = max(1, UNPACK_BUDGET // (self.out_features * self.width))
        for start in range(0, inputs.shape[1], step):
            block_inputs = inputs[:, start : start + step]  # (N, k, W)
            codes = unpack_bits(self.codes[:, start : start + step], self.bits, self.width)  # (O, k, W)
            codes = codes.to(x.dtype)
            if zero_point is None:
                codes = 2 * codes - 1
            partial = torch.einsum("nkw,okw->nko", block_inputs, codes)  # (N, k, O)
            out += (partial * scale[start : start + step]).sum(1)
            if zero_point is not None:
                out += block_inputs.sum(-1) @ zero_point[start : start + step]  # (N, k) @ (k, O)
        if self.bias is not None:
            out += self.bias.to(x.dtype)
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        kind = "binary" if self.zero_point is None else f"{self.bits}-bit affine"
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, {kind}, "
            f"block={self.width}, scale_dtype={self.scale_dtype}, bias={self.bias is not None}"
        )
