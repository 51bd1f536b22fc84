"""Best-path CTC decoding, registered as ``search`` ``ctc_greedy_search``; it streams."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from speechforge.interfaces import StreamingSearch


def collapse(path: Tensor, blank_id: int = 0) -> list[int]:
    """Merge repeats, then drop blanks. Args: path (T,)."""
    if path.numel() == 0:
        return []
    keep = torch.ones_like(path, dtype=torch.bool)
    keep[1:] = path[1:] != path[:-1]
    path = path[keep]
    return path[path != blank_id].tolist()


@dataclass
class GreedyState:
    """Per utterance: the collapsed tokens so far and the label of its last frame (a repeat
    across a chunk boundary is merged like one inside a chunk)."""

    tokens: list[list[int]]
    last_label: list[int]


class CTCGreedySearch(StreamingSearch[GreedyState]):
    """Argmax per frame for the whole batch at once, then collapse per utterance."""

    def __init__(self, *, blank_id: int = 0) -> None:
        self.blank_id = blank_id

    def __call__(self, model, encoder_out: Tensor, encoder_lens: Tensor) -> list[list[int]]:
        best = model.find_ctc_head("decode method ctc_greedy_search")(encoder_out).argmax(dim=-1)  # (B, T)
        return [collapse(best[i, : encoder_lens[i]], self.blank_id) for i in range(best.size(0))]

    def init(self, model, batch_size: int) -> GreedyState:
        return GreedyState([[] for _ in range(batch_size)], [self.blank_id] * batch_size)

    def step(self, model, state: GreedyState, encoder_chunk: Tensor, chunk_lens: Tensor) -> GreedyState:
        best = model.find_ctc_head("decode method ctc_greedy_search")(encoder_chunk).argmax(dim=-1).cpu()  # (B, T)
        for i, length in enumerate(chunk_lens.tolist()):
            if length == 0:
                continue
            path = best[i, :length]
            previous = torch.cat((torch.tensor([state.last_label[i]]), path[:-1]))
            new = path[(path != previous) & (path != self.blank_id)]
            state.tokens[i].extend(new.tolist())
            state.last_label[i] = int(path[-1])
        return state

    def partial(self, state: GreedyState) -> list[list[int]]:
        return [list(tokens) for tokens in state.tokens]

    def finalize(self, model, state: GreedyState) -> list[list[int]]:
        return self.partial(state)
