"""Scoring parity: our WER/CER equal jiwer's and a naive edit distance on the same pairs."""
from __future__ import annotations

import jiwer
import pytest

from speechforge.metrics.wer import alignment_report, error_rates

REFS = {"a": "THE CAT SAT ON THE MAT", "b": "HELLO WORLD", "c": "ONE TWO THREE"}
HYPS = {"a": "THE CAT SAT IN MAT TODAY", "b": "", "c": "ONE TWO THREE"}


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def test_wer_equals_jiwer_and_naive_edit_distance():
    rates = error_rates(REFS, HYPS)
    ids = sorted(REFS)
    assert rates.wer == pytest.approx(100 * jiwer.wer([REFS[i] for i in ids], [HYPS[i] for i in ids]))
    errors = sum(edit_distance(REFS[i].split(), HYPS[i].split()) for i in ids)
    assert rates.wer == pytest.approx(100 * errors / sum(len(REFS[i].split()) for i in ids))
    chars = sum(edit_distance(list(REFS[i]), list(HYPS[i])) for i in ids)
    assert rates.cer == pytest.approx(100 * chars / sum(len(REFS[i]) for i in ids))
    assert rates.num_utts == 3 and rates.ref_words == 11


def test_missing_hypothesis_counts_as_deletions():
    rates = error_rates({"x": "A B C"}, {})
    assert rates.wer == 100.0 and rates.deletions == 3


def test_alignment_report_marks_errors():
    report = alignment_report(REFS, HYPS)
    block_a = report.split("\n\n")[0]
    assert "Scores: (#C #S #D #I) 3 3 0 0" in block_a
    assert block_a.splitlines()[-1].split() == ["Eval:", "S", "S", "S"]
    assert "id: b" in report and "(#C #S #D #I) 0 0 2 0" in report
