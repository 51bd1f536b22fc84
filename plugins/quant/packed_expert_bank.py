"""A stack of packed expert weights standing in for an MoE layer's float expert bank."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from speechforge.errors import ConfigError
from speechforge_plugins.quant.blocks import merge_blocks
from speechforge_plugins.quant.packed_buffers import PackedBuffers, packed_parametrization
from speechforge_plugins.quant.packed_weight import PackedWeight


class PackedExpertBank(PackedBuffers):
    """E packed 1- or 2-bit expert weights (E, O, I), each laid out as a
    :class:`~speechforge_plugins.quant.packed_linear.PackedLinear`'s (O, I) weight, indexed
    like the float stack they replace: ``bank[e]`` is expert e's dequantized (O, I) weight.

    The quantizer sets it in place of one stacked weight of an MoE layer (``layer.w_1 = bank``;
    the state dict keys become ``w_1.codes``, ``w_1.scale``, ...). The MoE layer reads its
    stacked weights once per forward and then takes one expert's slice, ``w_1[e]``, for that
    expert's rows, exactly as it does with a float or a parametrized stack; so a stand-in that
    is indexed the same way is the one form that reaches the layer without any packing logic in
    it, and expands one expert's weight only while that expert runs, never the whole float bank.
    (A module the layer would call instead, ``w_1(x, e)``, would make every float path go
    through it too; a ``parametrize`` parametrization has to return the whole stack.) The layer
    runs such stand-ins expert by expert: its padded batched GEMM and its oneDNN copies, which
    read the whole stack, take tensors only.

    An expert's weight is dequantized as the fake quantizer computes it (``scale * (2 c - 1)``,
    ``scale * c + zero_point`` per block), so the packed layer computes exactly what the
    fake-quantized layer computed.

    Args:
        num_experts: E.
        out_features: O.
        in_features: I.
        bits: 1 or 2.
        block_size: block width W along I; None for per-channel (W = I).
        scale_dtype: storage of the metadata, ``float32`` or ``int8``.
        zero_point: affine codes with a zero point; False for binary (sign) codes.
        device: where the empty buffers are made (``meta`` to fill them by assignment).
    """

    def __init__(
        self,
        num_experts: int,
        out_features: int,
        in_features: int,
        *,
        bits: int,
        block_size: int | None,
        scale_dtype: str = "float32",
        zero_point: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(
            (num_experts, out_features, in_features),
            bits=bits,
            block_size=block_size,
            scale_dtype=scale_dtype,
            zero_point=zero_point,
            device=device,
            name="PackedExpertBank",
        )
        self.num_experts, self.out_features, self.in_features = num_experts, out_features, in_features

    @classmethod
    def from_packed(cls, packed: PackedWeight) -> PackedExpertBank:
        """A bank holding ``packed`` (an (E, O, I) stack) as it is."""
        if len(packed.shape) != 3:
            raise ConfigError(f"PackedExpertBank takes an (E, O, I) stack, got shape {packed.shape}")
        bank = cls(*packed.shape, **cls.settings(packed), device="meta")
        bank.load_state_dict(cls.state(packed), assign=True)
        return bank

    @classmethod
    def from_parametrized(cls, layer: nn.Module, name: str) -> PackedExpertBank:
        """Packs ``layer``'s stacked weight ``name``, parametrized by one WeightFakeQuantizer."""
        return cls.from_packed(packed_parametrization(layer, name))

    def __getitem__(self, expert: int) -> Tensor:
        """Expert ``expert``'s dequantized weight (O, I), made now and not kept, in the float
        metadata's dtype (float32 unless the model was cast)."""
        dtype = (self.scale if self.scale_step is None else self.scale_step).dtype
        weight = self.code_values(self.codes[expert], dtype)  # (O, NB, W)
        weight = weight * self.metadata("scale", dtype, expert).unsqueeze(-1)
        if self.zero_point is not None:
            weight = weight + self.metadata("zero_point", dtype, expert).unsqueeze(-1)
        return merge_blocks(weight)

    def extra_repr(self) -> str:
        return (
            f"num_experts={self.num_experts}, out_features={self.out_features}, "
            f"in_features={self.in_features}, {super().extra_repr()}"
        )
