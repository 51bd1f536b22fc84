"""Asymmetric n-bit min/max quantization with learned scale and zero point (the paper's Exp1,
Exp2 and, with one bit and static clipping, Exp3; Rybakov et al. 2023's I2WasymSc family).

Each block b of the contraction dim has a scale s_b and a zero point z_b (the value of level
0, in weight units) on the grid ``z_b + s_b * {0, ..., 2**bits - 1}``; the weight is

    q = clamp(round((w - z) / s), 0, 2**bits - 1),    w_hat = s * q + z.

s and z start from the block's min and max (the grid spanning [min, max], shrunk about its
centre by ``clip`` for static clipping) and are then learned as in LSQ / LSQ+ (Esser et al.
2020; Bhalgat et al. 2020): ``round`` passes its gradient straight through, so

    d w_hat / d w = 1 inside the grid, 0 outside (the clamp),
    d w_hat / d s = q - (w - z) / s inside, 0 below, 2**bits - 1 above,
    d w_hat / d z = 0 inside, 1 outside,

and the scale, zero point (and clip factor) gradients are multiplied by LSQ's
``1 / sqrt(W * (2**bits - 1))`` (W weights share a block's metadata) to keep their steps in
proportion to the weights'.
``learn_clip`` adds a learned factor (initially 1) per block that scales the grid about its
centre, so clipping can be learned apart from the grid's position.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from speechforge.errors import ConfigError
from speechforge_plugins.quant.bit_packing import PACKABLE_BITS, pack_bits
from speechforge_plugins.quant.blocks import merge_blocks, split_blocks
from speechforge_plugins.quant.packed_weight import PackedWeight
from speechforge_plugins.quant.weight_fake_quantizer import (
    WeightFakeQuantizer,
    scale_gradient,
    straight_through,
)

MIN_SCALE = 1e-8


class MinMaxWeight(WeightFakeQuantizer):
    """n-bit asymmetric fake quantization, one learned (scale, zero point) per block.

    Args:
        weight: the float weight (..., O, I) the grid is initialised from (not kept).
        name: the layer's module name, for error messages.
        bits: 1 or 2.
        block_size: sub-channel block width along I (64 in Exp2); None for per-channel (Exp1).
        clip: the initial grid spans [min, max] scaled by ``clip`` about its centre, in (0, 1].
        learn_clip: learn a per-block factor scaling the grid about its centre.
        scale_dtype: ``float32`` or ``int8`` storage of scales and zero points.
    """

    metadata_per_block = 2

    def __init__(
        self,
        weight: Tensor,
        *,
        name: str,
        bits: int = 2,
        block_size: int | None = None,
        clip: float = 1.0,
        learn_clip: bool = False,
        scale_dtype: str = "float32",
    ) -> None:
        if bits not in PACKABLE_BITS:
            raise ConfigError(f"{name}: minmax bits must be one of {PACKABLE_BITS}, got {bits}")
        if not 0.0 < clip <= 1.0:
            raise ConfigError(f"{name}: minmax clip must lie in (0, 1], got {clip}")
        super().__init__(tuple(weight.shape), name=name, bits=bits, block_size=block_size, scale_dtype=scale_dtype)
        self.levels = (1 << bits) - 1
        self.gradient_factor = 1.0 / math.sqrt(self.width * self.levels)
        blocks = split_blocks(weight.detach().float(), self.width)
        low, high = blocks.amin(-1, keepdim=True), blocks.amax(-1, keepdim=True)  # (..., O, NB, 1)
        half_range = clip * (high - low) / 2
        self.scale = nn.Parameter(2 * half_range / self.levels)
        self.zero_point = nn.Parameter((high + low) / 2 - half_range)
        self.clip_factor = nn.Parameter(torch.ones_like(self.scale)) if learn_clip else None

    def _raw_grid(self) -> tuple[Tensor, Tensor]:
        """The learned (scale, zero point), each (..., O, NB, 1), before metadata rounding."""
        scale = scale_gradient(self.scale, self.gradient_factor).clamp_min(MIN_SCALE)
        zero_point = scale_gradient(self.zero_point, self.gradient_factor)
        if self.clip_factor is not None:
            centre = zero_point + scale * self.levels / 2
            scale = scale * scale_gradient(self.clip_factor, self.gradient_factor).clamp_min(MIN_SCALE)
            zero_point = centre - scale * self.levels / 2
        return scale, zero_point

    def _levels(self, blocks: Tensor, scale: Tensor, zero_point: Tensor) -> Tensor:
        """(..., O, NB, W) -> its levels in [0, 2**bits - 1], rounding straight-through."""
        levels = ((blocks - zero_point) / scale).clamp(0, self.levels)
        return straight_through(levels, torch.round(levels))

    def _grid(self) -> tuple[Tensor, Tensor]:
        """(scale, zero point), each (..., O, NB, 1), as stored (rounded to int8 if asked)."""
        scale, zero_point = self._raw_grid()
        return self._stored_value(scale), self._stored_value(zero_point)

    def forward(self, weight: Tensor) -> Tensor:
        """(..., O, I) -> (..., O, I) dequantized n-bit weight."""
        scale, zero_point = self._grid()
        levels = self._levels(split_blocks(weight, self.width), scale, zero_point)  # (..., O, NB, W)
        return merge_blocks(levels * scale + zero_point).to(weight.dtype)

    @torch.no_grad()
    def pack(self, weight: Tensor) -> PackedWeight:
        scale, zero_point = self._grid()
        levels = self._levels(split_blocks(weight, self.width), scale, zero_point)
        raw_scale, raw_zero_point = self._raw_grid()
        stored_scale, scale_step = self._store(raw_scale)
        stored_zero_point, zero_point_step = self._store(raw_zero_point)
        return PackedWeight(
            shape=tuple(weight.shape),
            bits=self.bits,
            width=self.width,
            codes=pack_bits(levels.to(torch.uint8), self.bits),  # (..., O, NB, W * bits / 8)
            scale=stored_scale,
            scale_step=scale_step,
            zero_point=stored_zero_point,
            zero_point_step=zero_point_step,
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, learn_clip={self.clip_factor is not None}"
