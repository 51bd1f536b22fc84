"""CTC prefix beam search (Hannun et al., 2014), registered as ``search``
``ctc_prefix_beam_search`` (its n-best feeds attention rescoring) and, with the experiment's
n-gram language model fused in, ``ctc_prefix_beam_search_lm``. Both stream: the beams move
forward chunk by chunk."""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from speechforge.errors import ConfigError
from speechforge.interfaces import StreamingSearch
from speechforge.lm.ngram_lm import NgramLM
from speechforge.lm.shallow_fusion import LMPrefixScore

NEG_INF = -float("inf")


def _logadd(*values: float) -> float:
    top = max(values)
    if top == NEG_INF:
        return NEG_INF
    return top + math.log(sum(math.exp(v - top) for v in values))


#: prefix -> (log-prob of ending in blank, log-prob of ending in its last label)
Beams = dict[tuple[int, ...], tuple[float, float]]
#: extra score of a prefix when beams are ranked (a fused language model), or None
PrefixScore = Callable[[tuple[int, ...]], float]


def extend_prefix_beams(
    beams: Beams, log_probs: Tensor, beam_size: int, blank_id: int = 0, prefix_score: PrefixScore | None = None
) -> Beams:
    """Continue a prefix beam search over more frames (streaming calls it chunk by chunk and
    gets the same n-best as one call over the whole utterance).

    Each prefix keeps two scores: ending in blank and ending in its last label, so that a
    repeated label is merged only when no blank separates the two frames.

    Args: beams from the previous frames; log_probs (T, V) of the new frames; prefix_score
        added to a prefix's CTC log-prob when ranking (the beams keep CTC scores only).
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
        if prefix_score is None:
            ranked = sorted(next_beams.items(), key=lambda kv: _logadd(*kv[1]), reverse=True)
        else:
            ranked = sorted(next_beams.items(), key=lambda kv: _logadd(*kv[1]) + prefix_score(kv[0]), reverse=True)
        beams = {prefix: (s[0], s[1]) for prefix, s in ranked[:beam_size]}
    return beams


def prefix_beam_search(
    log_probs: Tensor, beam_size: int, blank_id: int = 0, prefix_score: LMPrefixScore | None = None
) -> list[tuple[tuple[int, ...], float]]:
    """N-best label sequences of one utterance with their CTC log-probability.

    Args: log_probs (T, V) of one utterance (valid frames only); prefix_score: a fused LM,
        which also orders the n-best (with its end-of-sentence score).
    Returns: up to ``beam_size`` (tokens, CTC log-prob), best first.
    """
    return ranked_nbest(extend_prefix_beams(initial_beams(), log_probs, beam_size, blank_id, prefix_score), prefix_score)


def initial_beams() -> Beams:
    """The beams before any frame: the empty prefix, ending in blank with probability 1."""
    return {(): (0.0, NEG_INF)}


def ranked_nbest(beams: Beams, prefix_score: LMPrefixScore | None = None) -> list[tuple[tuple[int, ...], float]]:
    """The beams as (tokens, CTC log-prob), best first; with a fused LM ordered by the CTC score
    plus the LM's score of the whole hypothesis (end of sentence included)."""
    nbest = [(prefix, _logadd(*scores)) for prefix, scores in beams.items()]
    if prefix_score is not None:
        nbest.sort(key=lambda item: item[1] + prefix_score.final(item[0]), reverse=True)
    return nbest


@dataclass
class PrefixBeamState:
    """Per utterance: its beams and its LM fusion (memoised prefix scores), or None."""

    beams: list[Beams]
    fusions: list[LMPrefixScore | None]


class CTCPrefixBeamSearch(StreamingSearch[PrefixBeamState]):
    """Best hypothesis of :func:`prefix_beam_search` per utterance, optionally with an n-gram
    LM fused in (``lm_weight`` times its log-prob plus ``lm_bonus`` per token). Streams: each
    chunk's frames extend the beams, which equal those of one pass over all frames."""

    def __init__(
        self, *, beam_size: int = 10, blank_id: int = 0, lm: NgramLM | None = None, lm_weight: float = 0.0, lm_bonus: float = 0.0
    ) -> None:
        self.beam_size = beam_size
        self.blank_id = blank_id
        self.lm = lm
        self.lm_weight = lm_weight
        self.lm_bonus = lm_bonus

    def init(self, model, batch_size: int) -> PrefixBeamState:
        fusions = [self._fusion() for _ in range(batch_size)]
        return PrefixBeamState([initial_beams() for _ in range(batch_size)], fusions)

    def step(self, model, state: PrefixBeamState, encoder_chunk: Tensor, chunk_lens: Tensor) -> PrefixBeamState:
        log_probs = model.find_ctc_head("decode method ctc_prefix_beam_search")(encoder_chunk)  # (B, T, V)
        for i, length in enumerate(chunk_lens.tolist()):
            if length > 0:
                state.beams[i] = extend_prefix_beams(
                    state.beams[i], log_probs[i, :length], self.beam_size, self.blank_id, state.fusions[i]
                )
        return state

    def partial(self, state: PrefixBeamState) -> list[list[int]]:
        """The best prefix so far, ranked as the beams are (CTC score plus the LM's prefix score)."""
        return [
            list(max(beams.items(), key=lambda kv: _logadd(*kv[1]) + (fusion(kv[0]) if fusion else 0.0))[0])
            for beams, fusion in zip(state.beams, state.fusions)
        ]

    def finalize(self, model, state: PrefixBeamState) -> list[list[int]]:
        return [list(ranked_nbest(beams, fusion)[0][0]) for beams, fusion in zip(state.beams, state.fusions)]

    def _fusion(self) -> LMPrefixScore | None:
        return LMPrefixScore(self.lm, self.lm_weight, self.lm_bonus) if self.lm is not None else None


def ctc_prefix_beam_search(*, beam_size: int = 10, blank_id: int = 0) -> CTCPrefixBeamSearch:
    """The ``ctc_prefix_beam_search`` method: CTC scores alone."""
    return CTCPrefixBeamSearch(beam_size=beam_size, blank_id=blank_id)


def ctc_prefix_beam_search_lm(
    *, lm: NgramLM | None = None, beam_size: int = 10, blank_id: int = 0, lm_weight: float = 0.5, lm_bonus: float = 1.0
) -> CTCPrefixBeamSearch:
    """The ``ctc_prefix_beam_search_lm`` method: the experiment's n-gram LM fused in.

    Args: lm: given by the recognizer (context), from ``EXP/lm/lm.arpa``; lm_weight,
        lm_bonus: ``decode.lm_weight`` and ``decode.lm_bonus``.
    """
    if lm is None:
        raise ConfigError(
            "decode: ctc_prefix_beam_search_lm needs the experiment's language model EXP/lm/lm.arpa: "
            "set lm.order in the config and run `speechforge lm` (recipe stage 3)"
        )
    return CTCPrefixBeamSearch(beam_size=beam_size, blank_id=blank_id, lm=lm, lm_weight=lm_weight, lm_bonus=lm_bonus)
