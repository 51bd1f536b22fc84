"""``quantizer: {type: minmax}``: the paper's asymmetric n-bit quantization of the target
weights with learned scale and zero point, per channel (Exp1) or in sub-channel blocks (Exp2),
optionally with a learned clipping factor; one bit with static clipping is Exp3."""
from __future__ import annotations

from typing import Annotated, Literal

from torch import Tensor

from speechforge.value_check import Range
from speechforge_plugins.quant.minmax_weight import MinMaxWeight
from speechforge_plugins.quant.weight_quantizer import PAPER_BLOCK_SIZE, WeightQuantizer


class MinMaxQuantizer(WeightQuantizer):
    """Every target weight on a learned grid ``z_b + s_b * {0 .. 2**bits - 1}`` per block b
    (:class:`~speechforge_plugins.quant.minmax_weight.MinMaxWeight`), initialised from the
    block's min and max when ``prepare`` runs (so from the float weights ``train.init_from``
    loaded).

    Args:
        targets: glob patterns over module names; None (default): the encoder's linear layers
            and expert banks, as the paper.
        bits: 2 (Exp1, Exp2) or 1 (Exp3).
        block_size: null (default): per channel (Exp1); 64: sub-channel blocks (Exp2).
        clip: the initial grid spans ``clip`` x [min, max] about its centre, in (0, 1].
        learn_clip: learn a per-block factor scaling the grid about its centre.
        scale_dtype: ``float32`` or ``int8`` storage of scales and zero points.
    """

    name = "minmax"
    metadata_per_block = 2
    zero_point = True

    def __init__(
        self,
        *,
        targets: list[str] | None = None,
        bits: Literal[1, 2] = 2,
        block_size: Annotated[int, Range(ge=1)] | None = None,
        clip: Annotated[float, Range(gt=0.0, le=1.0)] = 1.0,
        learn_clip: bool = False,
        scale_dtype: Literal["float32", "int8"] = "float32",
    ) -> None:
        super().__init__(targets=targets, bits=bits, block_size=block_size, scale_dtype=scale_dtype)
        self.clip = clip
        self.learn_clip = learn_clip

    def paper_experiment(self) -> str | None:
        if self.bits == 1:
            return "Exp3" if self.block_size is None else None
        return {None: "Exp1", PAPER_BLOCK_SIZE: "Exp2"}.get(self.block_size)

    def fake_quantizer(self, weight: Tensor, name: str) -> MinMaxWeight:
        return MinMaxWeight(
            weight,
            name=name,
            bits=self.bits,
            block_size=self.block_size,
            clip=self.clip,
            learn_clip=self.learn_clip,
            scale_dtype=self.scale_dtype,
        )
