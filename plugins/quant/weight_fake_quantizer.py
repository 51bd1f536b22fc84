"""Base of the per-weight fake quantizers: ``torch.nn.utils.parametrize`` parametrizations."""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from speechforge_plugins.quant.blocks import block_width
from speechforge_plugins.quant.metadata_codec import check_metadata_dtype, fake_quantize_metadata, int8_encode
from speechforge_plugins.quant.packed_weight import PackedWeight
from speechforge_plugins.quant.size import quantized_bits


class WeightFakeQuantizer(nn.Module, ABC):
    """Fake quantization of one weight (..., O, I) over its contraction dim I, in blocks.

    Registered with ``parametrize.register_parametrization(layer, "weight", quantizer)``, the
    layer computes with ``forward(original)`` (the dequantized weight, gradients straight
    through), while the optimizer keeps updating the float original; :meth:`pack` turns the
    original into exactly the codes and metadata that forward computed with.

    Args:
        shape: the weight's shape (..., O, I); (O, I) for ``nn.Linear``, (E, O, I) for MoE
            expert banks.
        name: the layer's module name, for error messages.
        bits: bits per weight.
        block_size: sub-channel block width along I; None for per-channel.
        scale_dtype: ``float32`` or ``int8`` (double quantization) storage of the metadata.
    """

    #: Metadata values stored per block (scale; scale and zero point).
    metadata_per_block: int

    def __init__(
        self, shape: tuple[int, ...], *, name: str, bits: int, block_size: int | None, scale_dtype: str
    ) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.name = name
        self.bits = bits
        self.block_size = block_size
        self.width = block_width(self.shape, block_size, name)
        self.scale_dtype = check_metadata_dtype(scale_dtype, name)

    @abstractmethod
    def forward(self, weight: Tensor) -> Tensor:
        """(..., O, I) float weight -> (..., O, I) its fake-quantized (dequantized) value."""

    @abstractmethod
    def pack(self, weight: Tensor) -> PackedWeight:
        """The packed codes and metadata of ``weight`` (..., O, I), as forward quantizes it."""

    def size_bits(self, metadata_dtype: str) -> int:
        """Bits of the packed weight with its metadata stored as ``metadata_dtype`` (the size
        report asks for both ``float32`` and ``int8``, whatever this quantizer trains with)."""
        return quantized_bits(
            self.shape,
            bits=self.bits,
            block_size=self.block_size,
            metadata_per_block=self.metadata_per_block,
            metadata_dtype=metadata_dtype,
            name=self.name,
        )

    def _store(self, values: Tensor) -> tuple[Tensor, Tensor | None]:
        """Metadata (..., O, NB, 1) -> its stored form (..., O, NB) and int8 step (or None)."""
        values = values.detach().squeeze(-1)
        if self.scale_dtype == "float32":
            return values.float(), None
        return int8_encode(values)

    def _stored_value(self, values: Tensor) -> Tensor:
        """Metadata as training sees it: rounded to its int8 codes when stored as int8."""
        return fake_quantize_metadata(values, self.scale_dtype)

    def extra_repr(self) -> str:
        return f"{self.name}: bits={self.bits}, block_size={self.block_size}, scale_dtype={self.scale_dtype}"


def straight_through(values: Tensor, quantized: Tensor) -> Tensor:
    """Exactly ``quantized`` in the forward, the identity gradient to ``values`` in the backward."""
    return quantized.detach() + (values - values.detach())


def scale_gradient(values: Tensor, factor: float) -> Tensor:
    """Exactly ``values`` in the forward; their gradient multiplied by ``factor`` (LSQ)."""
    scaled = values * factor
    return values.detach() + (scaled - scaled.detach())


def tiny(dtype: torch.dtype) -> float:
    """The smallest positive normal number of ``dtype``: the paper's epsilon for zeros."""
    return torch.finfo(dtype).tiny
