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
