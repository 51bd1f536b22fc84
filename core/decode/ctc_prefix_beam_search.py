"""CTC prefix beam search (Hannun et al., 2014), registered as ``search``
``ctc_prefix_beam_search``; its n-best feeds attention rescoring."""
from __future__ import annotations

import math
from collections import defaultdict

from torch import Tensor

from speechforge.interfaces import SearchMethod

NEG_INF = -float("inf")


def _logadd(*values: float) -> float:
    top = max(values)
    if top == NEG_INF:
        return NEG_INF
    return top + math.log(sum(math.exp(v - top) for v in values))


#: prefix -> (log-prob of ending in blank, log-prob of ending in its last label)
Beams = dict[tuple[int, ...], tuple[float, float]]


def extend_prefix_beams(beams: Beams, log_probs: Tensor, beam_size: int, blank_id: int = 0) -> Beams:
    """Continue a prefix beam search over more frames (streaming calls it chunk by chunk and
    gets the same n-best as one call over the whole utterance).

    Each prefix keeps two scores: ending in blank and ending in its last label, so that a
    repeated label is merged only when no blank separates the two frames.

    Args: beams from the previous frames; log_probs (T, V) of the new frames.
    Returns: the ``beam_size`` best beams after them.
    """
    frames = log_probs.float().cpu()
    top_values, top_ids = frames.topk(min(beam_size, frames.size(1)), dim=-1)  # (T, k)
    for values, ids in zip(top_values.tolist(), top_ids.tolist()):
        next_beams: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [NEG_INF, NEG_INF])
        for prefix, (blank_end, label_end) in beams.items():
            for logp, token in zip(values, ids):
                if token == blank_id:
                    entry = next_beams[prefix]
                    entry[0] = _logadd(entry[0], blank_end + logp, label_end + logp)
                    continue
                last = prefix[-1] if prefix else None
                extended = next_beams[prefix + (token,)]
                if token == last:
                    extended[1] = _logadd(extended[1], blank_end + logp)
                    same = next_beams[prefix]
                    same[1] = _logadd(same[1], label_end + logp)
                else:
                    extended[1] = _logadd(extended[1], blank_end + logp, label_end + logp)
        ranked = sorted(next_beams.items(), key=lambda kv: _logadd(*kv[1]), reverse=True)
        beams = {prefix: (s[0], s[1]) for prefix, s in ranked[:beam_size]}
    return beams


def prefix_beam_search(log_probs: Tensor, beam_size: int, blank_id: int = 0) -> list[tuple[tuple[int, ...], float]]:
    """N-best label sequences of one utterance with their total log-probability.

    Args: log_probs (T, V) of one utterance (valid frames only).
    Returns: up to ``beam_size`` (tokens, log-prob), best first.
    """
    beams = extend_prefix_beams({(): (0.0, NEG_INF)}, log_probs, beam_size, blank_id)
    return [(prefix, _logadd(*scores)) for prefix, scores in beams.items()]


class CTCPrefixBeamSearch(SearchMethod):
    """Best hypothesis of :func:`prefix_beam_search` per utterance."""

    def __init__(self, *, beam_size: int = 10, blank_id: int = 0) -> None:
        self.beam_size = beam_size
        self.blank_id = blank_id

    def __call__(self, model, encoder_out: Tensor, encoder_lens: Tensor) -> list[list[int]]:
        log_probs = model.ctc(encoder_out)  # (B, T, V)
        return [
            list(prefix_beam_search(log_probs[i, : encoder_lens[i]], self.beam_size, self.blank_id)[0][0])
            for i in range(log_probs.size(0))
        ]


