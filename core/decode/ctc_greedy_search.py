"""Best-path CTC decoding, registered as ``search`` ``ctc_greedy_search``."""
from __future__ import annotations

import torch
from torch import Tensor

from speechforge.interfaces import SearchMethod


def collapse(path: Tensor, blank_id: int = 0) -> list[int]:
    """Merge repeats, then drop blanks. Args: path (T,)."""
    if path.numel() == 0:
        return []
    keep = torch.ones_like(path, dtype=torch.bool)
    keep[1:] = path[1:] != path[:-1]
    path = path[keep]
    return path[path != blank_id].tolist()


class CTCGreedySearch(SearchMethod):
    """Argmax per frame for the whole batch at once, then collapse per utterance."""

    def __init__(self, *, blank_id: int = 0) -> None:
        self.blank_id = blank_id

    def __call__(self, model, encoder_out: Tensor, encoder_lens: Tensor) -> list[list[int]]:
        best = model.find_ctc_head("decode method ctc_greedy_search")(encoder_out).argmax(dim=-1)  # (B, T)
        return [collapse(best[i, : encoder_lens[i]], self.blank_id) for i in range(best.size(0))]
