"""The buffers of one packed weight, shared by the packed layers: the codes and metadata of a
:class:`~speechforge_plugins.quant.packed_weight.PackedWeight`, their decoding, and the packed
form of a parametrized weight."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from speechforge.errors import ConfigError
from speechforge_plugins.quant.bit_packing import packed_length, unpack_bits
from speechforge_plugins.quant.blocks import block_width
from speechforge_plugins.quant.metadata_codec import check_metadata_dtype, int8_decode
from speechforge_plugins.quant.packed_weight import PackedWeight
from speechforge_plugins.quant.weight_fake_quantizer import WeightFakeQuantizer


class PackedBuffers(nn.Module):
    """A packed weight (..., O, I) in blocks of W along I (NB = I / W per channel), held as
    buffers: ``codes`` (..., O, NB, ceil(W bits / 8)) uint8, ``scale`` (..., O, NB) float32 or
    int8, ``zero_point`` likewise for affine codes (else None), and for int8 metadata the float32
    0-dim ``scale_step`` (``zero_point_step``) of its double quantization.

    The base of the packed layers (:class:`~speechforge_plugins.quant.packed_linear.PackedLinear`
    for an (O, I) linear weight, :class:`~speechforge_plugins.quant.packed_expert_bank.PackedExpertBank`
    for an (E, O, I) expert bank), which add how they compute on these buffers. The constructor
    makes them empty with their shapes and dtypes, so a packed state dict loads into it
    (``device="meta"`` and ``load_state_dict(..., assign=True)`` never allocate them twice).

    Args:
        shape: the float weight's shape (..., O, I).
        bits: 1 or 2.
        block_size: block width W along I; None for per-channel (W = I).
        scale_dtype: storage of the metadata, ``float32`` or ``int8``.
        zero_point: affine codes with a zero point; False for binary (sign) codes.
        device: where the empty buffers are made.
        name: the layer kind, for error messages.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        *,
        bits: int,
        block_size: int | None,
        scale_dtype: str,
        zero_point: bool,
        device: torch.device | str | None,
        name: str,
    ) -> None:
        super().__init__()
        self.bits = bits
        self.width = block_width(tuple(shape), block_size, name)
        self.scale_dtype = check_metadata_dtype(scale_dtype, name)
        blocks = (*shape[:-1], shape[-1] // self.width)  # (..., O, NB)
        meta_dtype = torch.float32 if scale_dtype == "float32" else torch.int8
        code_bytes = packed_length(self.width, bits)
        self.register_buffer("codes", torch.empty(*blocks, code_bytes, dtype=torch.uint8, device=device))
        for meta, wanted in (("scale", True), ("zero_point", zero_point)):
            self.register_buffer(meta, torch.empty(blocks, dtype=meta_dtype, device=device) if wanted else None)
            step_wanted = wanted and scale_dtype == "int8"
            self.register_buffer(f"{meta}_step", torch.empty((), device=device) if step_wanted else None)

    @staticmethod
    def settings(packed: PackedWeight) -> dict[str, Any]:
        """The constructor's keywords for the buffers of ``packed``."""
        return {
            "bits": packed.bits,
            "block_size": packed.width,
            "scale_dtype": "float32" if packed.scale_step is None else "int8",
            "zero_point": packed.zero_point is not None,
        }

    @staticmethod
    def state(packed: PackedWeight) -> dict[str, Tensor]:
        """The buffers' state dict entries holding ``packed``."""
        tensors = {
            "codes": packed.codes,
            "scale": packed.scale,
            "scale_step": packed.scale_step,
            "zero_point": packed.zero_point,
            "zero_point_step": packed.zero_point_step,
        }
        return {key: value for key, value in tensors.items() if value is not None}

    def metadata(self, name: str, dtype: torch.dtype, index: Any = ...) -> Tensor:
        """The metadata buffer ``name`` (``scale`` or ``zero_point``) at ``index`` (e.g. one
        expert of a bank; all of it by default), (..., O, NB), decoded to ``dtype`` values."""
        values = getattr(self, name)[index]
        step = getattr(self, f"{name}_step")
        return (values.float() if step is None else int8_decode(values, step)).to(dtype)

    def code_values(self, codes: Tensor, dtype: torch.dtype) -> Tensor:
        """(..., k, ceil(W bits / 8)) packed codes of k blocks -> (..., k, W) their values in
        ``dtype``: the signs -1, +1 of binary codes, the levels 0 .. 2**bits - 1 of affine ones."""
        values = unpack_bits(codes, self.bits, self.width).to(dtype)
        return 2 * values - 1 if self.zero_point is None else values

    def extra_repr(self) -> str:
        kind = "binary" if self.zero_point is None else f"{self.bits}-bit affine"
        return f"{kind}, block={self.width}, scale_dtype={self.scale_dtype}"


def packed_parametrization(module: nn.Module, name: str) -> PackedWeight:
    """The packed form of ``module``'s weight ``name``, parametrized by exactly one
    :class:`~speechforge_plugins.quant.weight_fake_quantizer.WeightFakeQuantizer`: the codes
    and metadata its forward computes with."""
    quantizers = getattr(module.parametrizations, name) if parametrize.is_parametrized(module, name) else []
    if len(quantizers) != 1 or not isinstance(quantizers[0], WeightFakeQuantizer):
        raise ConfigError(
            f"{type(module).__name__}.{name}: packing needs exactly one fake quantizer, got parametrizations "
            f"{[type(p).__name__ for p in quantizers]}"
        )
    return quantizers[0].pack(getattr(module.parametrizations, name).original)
