"""CTC prefix beam search (Hannun et al., 2014), registered as ``search``
``ctc_prefix_beam_search`` (its n-best feeds attention rescoring) and, with the experiment's
n-gram language model fused in, ``ctc_prefix_beam_search_lm``."""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable

from torch import Tensor

from speechforge.errors import ConfigError
from speechforge.interfaces import SearchMethod
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
    beams = extend_prefix_beams({(): (0.0, NEG_INF)}, log_probs, beam_size, blank_id, prefix_score)
    nbest = [(prefix, _logadd(*scores)) for prefix, scores in beams.items()]
    if prefix_score is not None:
        nbest.sort(key=lambda item: item[1] + prefix_score.final(item[0]), reverse=True)
    return nbest


class CTCPrefixBeamSearch(SearchMethod):
    """Best hypothesis of :func:`prefix_beam_search` per utterance, optionally with an n-gram
    LM fused in (``lm_weight`` times its log-prob plus ``lm_bonus`` per token)."""

    def __init__(
        self, *, beam_size: int = 10, blank_id: int = 0, lm: NgramLM | None = None, lm_weight: float = 0.0, lm_bonus: float = 0.0
    ) -> None:
        self.beam_size = beam_size
        self.blank_id = blank_id
        self.lm = lm
        self.lm_weight = lm_weight
        self.lm_bonus = lm_bonus

    def __call__(self, model, encoder_out: Tensor, encoder_lens: Tensor) -> list[list[int]]:
        log_probs = model.find_ctc_head("decode method ctc_prefix_beam_search")(encoder_out)  # (B, T, V)
        hyps = []
        for i in range(log_probs.size(0)):
            fusion = LMPrefixScore(self.lm, self.lm_weight, self.lm_bonus) if self.lm is not None else None
            nbest = prefix_beam_search(log_probs[i, : encoder_lens[i]], self.beam_size, self.blank_id, fusion)
            hyps.append(list(nbest[0][0]))
        return hyps


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
