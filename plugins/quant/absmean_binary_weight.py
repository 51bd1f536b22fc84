"""Absmean binarization (the paper's Figure 1, Exp4) with sub-channel blocks (Figure 2, Exp5).

In each block of the contraction dim, optionally centred (the block mean subtracted), zeros are
moved to +epsilon so that ``sign`` gives only +1 and -1, the scale is the block's mean absolute
value, and the dequantized weight is ``scale * sign``. ``sign`` passes its gradient straight
through, so ``d out / d w = scale * I + sign sign^T / W`` inside a block of width W (the second
term is the scale's own gradient, which the paper keeps as well).

Centralisation is off by default, as in the paper (no accuracy difference on USM). With it on,
the mean is not added back: the packed layer holds only signs and scales.
"""
from __future__ import annotations

import torch
from torch import Tensor

from speechforge_plugins.quant.bit_packing import pack_bits
from speechforge_plugins.quant.blocks import merge_blocks, split_blocks
from speechforge_plugins.quant.packed_weight import PackedWeight
from speechforge_plugins.quant.weight_fake_quantizer import WeightFakeQuantizer, straight_through, tiny

DEFAULT_BLOCK_SIZE = 64


class AbsmeanBinaryWeight(WeightFakeQuantizer):
    """1-bit fake quantization: ``scale_b * sign(w_b)`` per block b, scale_b = mean |w_b|.

    Args:
        weight: the weight (..., O, I) to quantize; only its shape is read here, so every
            fake quantizer is built the same way, ``cls(weight, name=..., **settings)``.
        name: the layer's module name, for error messages.
        block_size: sub-channel block width along I (64, the paper's Exp5); None for one
            scale per output channel (Exp4).
        centralize: subtract each block's mean before binarizing.
        scale_dtype: ``float32`` or ``int8`` storage of the scales.
    """

    metadata_per_block = 1

    def __init__(
        self,
        weight: Tensor,
        *,
        name: str,
        block_size: int | None = DEFAULT_BLOCK_SIZE,
        centralize: bool = False,
        scale_dtype: str = "float32",
    ) -> None:
        super().__init__(tuple(weight.shape), name=name, bits=1, block_size=block_size, scale_dtype=scale_dtype)
        self.centralize = centralize

    def _signed_blocks(self, weight: Tensor) -> Tensor:
        """(..., O, I) -> (..., O, NB, W), centred if asked, zeros moved to +epsilon."""
        blocks = split_blocks(weight, self.width)
        if self.centralize:
            blocks = blocks - blocks.mean(-1, keepdim=True)
        return blocks + (blocks == 0).to(blocks.dtype) * tiny(blocks.dtype)

    def forward(self, weight: Tensor) -> Tensor:
        """(..., O, I) -> (..., O, I) dequantized binary weight."""
        blocks = self._signed_blocks(weight)
        scale = self._stored_value(blocks.abs().mean(-1, keepdim=True))  # (..., O, NB, 1)
        signs = straight_through(blocks, torch.sign(blocks))
        return merge_blocks(signs * scale)

    @torch.no_grad()
    def pack(self, weight: Tensor) -> PackedWeight:
        blocks = self._signed_blocks(weight)
        scale, scale_step = self._store(blocks.abs().mean(-1, keepdim=True))
        return PackedWeight(
            shape=tuple(weight.shape),
            bits=1,
            width=self.width,
            codes=pack_bits((blocks > 0).to(torch.uint8), 1),  # (..., O, NB, W / 8)
            scale=scale,
            scale_step=scale_step,
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, centralize={self.centralize}"
