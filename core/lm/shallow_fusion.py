"""Shallow fusion: a language model's score added to a search's own while it ranks prefixes
(Gulcehre et al., 2015; with CTC prefix beam search as in Hannun et al., 2014)."""
from __future__ import annotations

from speechforge.lm.ngram_lm import NgramLM


class LMPrefixScore:
    """``weight * log p_LM(prefix) + bonus * len(prefix)`` of token prefixes, memoised.

    The bonus per token offsets the LM's preference for short hypotheses (every token costs
    it probability), which would otherwise turn into deletions.
    """

    def __init__(self, lm: NgramLM, weight: float, bonus: float) -> None:
        self.lm = lm
        self.weight = weight
        self.bonus = bonus
        self._scores: dict[tuple[int, ...], float] = {(): 0.0}

    def __call__(self, prefix: tuple[int, ...]) -> float:
        score = self._scores.get(prefix)
        if score is None:
            history = ((self.lm.bos,) + prefix[:-1])[-self.lm.order + 1 :] if self.lm.order > 1 else ()
            score = self(prefix[:-1]) + self.weight * self.lm.log_prob(history, prefix[-1]) + self.bonus
            self._scores[prefix] = score
        return score

    def final(self, prefix: tuple[int, ...]) -> float:
        """The prefix's score as a whole hypothesis: with the end-of-sentence probability."""
        history = ((self.lm.bos,) + prefix)[-self.lm.order + 1 :] if self.lm.order > 1 else ()
        return self(prefix) + self.weight * self.lm.log_prob(history, self.lm.eos)
