"""``quantizer: {type: absmean_binary}``: the paper's 1-bit absmean binarization of the target
weights, per channel (Exp4) or in sub-channel blocks (Exp5, blocks of 64 by default)."""
from __future__ import annotations

from typing import Annotated, Literal

from torch import Tensor

from speechforge.value_check import Range
from speechforge_plugins.quant.absmean_binary_weight import DEFAULT_BLOCK_SIZE, AbsmeanBinaryWeight
from speechforge_plugins.quant.weight_quantizer import PAPER_BLOCK_SIZE, WeightQuantizer


class AbsmeanBinaryQuantizer(WeightQuantizer):
    """Every target weight binarized as ``mean|w_b| * sign(w_b)`` per block b
    (:class:`~speechforge_plugins.quant.absmean_binary_weight.AbsmeanBinaryWeight`).

    Args:
        targets: glob patterns over module names; None (default): the encoder's linear layers
            and expert banks, as the paper.
        block_size: sub-channel block width along the contraction dim (64: Exp5); null for one
            scale per output channel (Exp4). A block that does not divide a layer's
            contraction dim is an error naming the layer.
        centralize: subtract each block's mean first (off in the paper).
        scale_dtype: ``float32`` or ``int8`` (double quantization) storage of the scales.
    """

    name = "absmean_binary"
    metadata_per_block = 1
    zero_point = False

    def __init__(
        self,
        *,
        targets: list[str] | None = None,
        block_size: Annotated[int, Range(ge=1)] | None = DEFAULT_BLOCK_SIZE,
        centralize: bool = False,
        scale_dtype: Literal["float32", "int8"] = "float32",
    ) -> None:
        super().__init__(targets=targets, bits=1, block_size=block_size, scale_dtype=scale_dtype)
        self.centralize = centralize

    def paper_experiment(self) -> str | None:
        return {None: "Exp4", PAPER_BLOCK_SIZE: "Exp5"}.get(self.block_size)

    def fake_quantizer(self, weight: Tensor, name: str) -> AbsmeanBinaryWeight:
        return AbsmeanBinaryWeight(
            weight, name=name, block_size=self.block_size, centralize=self.centralize, scale_dtype=self.scale_dtype
        )
