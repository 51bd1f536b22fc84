"""CTC searches: greedy collapse, prefix beam search against exhaustive enumeration."""
from __future__ import annotations

import itertools
import math
from collections import defaultdict

import torch

from speechforge.decode.ctc_greedy_search import CTCGreedySearch, collapse
from speechforge.decode.ctc_prefix_beam_search import CTCPrefixBeamSearch, prefix_beam_search
from speechforge.modules.ctc_head import CTCHead


def brute_force(log_probs: torch.Tensor) -> dict[tuple[int, ...], float]:
    """Total probability of every label sequence, summing all T^V alignments."""
    totals: dict[tuple[int, ...], float] = defaultdict(float)
    t, v = log_probs.shape
    for path in itertools.product(range(v), repeat=t):
        labels = tuple(collapse(torch.tensor(path)))
        totals[labels] += math.exp(sum(log_probs[i, p].item() for i, p in enumerate(path)))
    return totals


def test_collapse_merges_repeats_then_drops_blanks():
    assert collapse(torch.tensor([0, 1, 1, 0, 1, 2, 2, 0])) == [1, 1, 2]
    assert collapse(torch.tensor([], dtype=torch.long)) == []


def test_prefix_beam_search_equals_exhaustive_sum_without_pruning():
    log_probs = torch.randn(5, 3).log_softmax(-1)
    exact = brute_force(log_probs)
    nbest = prefix_beam_search(log_probs, beam_size=100)
    best_exact = sorted(exact.items(), key=lambda kv: -kv[1])[:5]
    for (labels, score), (exact_labels, prob) in zip(nbest, best_exact):
        assert labels == exact_labels
        assert math.isclose(math.exp(score), prob, rel_tol=1e-6)


class Model(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ctc = CTCHead(4, 6)

    def find_ctc_head(self, user: str) -> CTCHead:
        return self.ctc


def test_batched_searches_respect_lengths():
    model = Model()
    enc = torch.randn(3, 9, 4)
    lens = torch.tensor([9, 4, 1])
    greedy = CTCGreedySearch()(model, enc, lens)
    for i in range(3):
        alone = CTCGreedySearch()(model, enc[i : i + 1, : lens[i]], lens[i : i + 1])
        assert greedy[i] == alone[0]
    beam = CTCPrefixBeamSearch(beam_size=4)(model, enc, lens)
    assert len(beam) == 3 and all(0 not in hyp for hyp in beam)


def _lm(sentences, order=3):
    from speechforge.lm.ngram_lm import NgramLM

    pieces = ["<blank>", "<unk>", "a", "b", "c", "<sos/eos>"]
    return NgramLM.train(sentences, order, pieces, skip_ids=(0, 1, 5))


def test_fused_lm_with_zero_weight_and_bonus_is_the_plain_search():
    from speechforge.lm.shallow_fusion import LMPrefixScore

    lm = _lm([[2, 3, 4], [3, 3], [4, 2]])
    for seed in range(5):
        torch.manual_seed(seed)
        log_probs = torch.randn(12, 6).log_softmax(-1)
        plain = prefix_beam_search(log_probs, 4)
        fused = prefix_beam_search(log_probs, 4, prefix_score=LMPrefixScore(lm, 0.0, 0.0))
        assert [p for p, _ in fused] == [p for p, _ in plain]
        assert all(math.isclose(a, b) for (_, a), (_, b) in zip(fused, plain))  # CTC scores kept


def test_fused_lm_picks_the_spelling_it_knows():
    from speechforge.lm.shallow_fusion import LMPrefixScore

    # frames: "a", then "b" or "c" almost equally likely, then "a"; acoustics slightly prefer c
    probs = torch.full((3, 6), 1e-4)
    probs[0, 2] = probs[2, 2] = 1.0
    probs[1, 3], probs[1, 4] = 0.45, 0.55
    log_probs = (probs / probs.sum(-1, keepdim=True)).log()
    assert prefix_beam_search(log_probs, 4)[0][0] == (2, 4, 2)
    lm = _lm([[2, 3, 2]] * 10 + [[2, 4, 4]])
    fused = prefix_beam_search(log_probs, 4, prefix_score=LMPrefixScore(lm, 1.0, 0.0))
    assert fused[0][0] == (2, 3, 2)


def test_lm_search_needs_the_experiment_lm():
    import pytest

    from speechforge.errors import ConfigError
    from speechforge.plugins import create_host

    registry = create_host().registry
    with pytest.raises(ConfigError, match="needs the experiment's language model EXP/lm/lm.arpa"):
        registry.build("search", {"type": "ctc_prefix_beam_search_lm"}, "decode", lm=None)
    search = registry.build("search", {"type": "ctc_prefix_beam_search_lm", "lm_weight": 0.3}, "decode", lm=_lm([[2]]))
    assert search.lm_weight == 0.3 and search.lm is not None
