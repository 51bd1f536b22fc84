"""What a left-to-right attention decoder carries from one decoding step to the next."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class DecoderState:
    """Self-attention keys and values of the tokens decoded so far, one tensor per block.

    Attributes:
        caches: per block (N, H, length, 2 * D/H), the attention cache layout of core's
            ``Attention`` contract.
        length: tokens decoded so far (the position of the next one).
    """

    caches: list[Tensor]
    length: int

    def select(self, index: Tensor) -> DecoderState:
        """The state of hypotheses ``index`` (N',) in that order (beam reordering)."""
        return DecoderState([cache.index_select(0, index) for cache in self.caches], self.length)
