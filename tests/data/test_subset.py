"""data.subset: reproducible, sized as asked, order kept, bad options rejected."""
from __future__ import annotations

import random

import pytest

from speechforge.data.data_dir import Utterance
from speechforge.data.subset import take_subset
from speechforge.errors import ConfigError
from speechforge.train.options import SubsetOptions

UTTS = [Utterance(f"u{i:02d}", f"{i}.wav", "A", "s", 1.0 + i % 3) for i in range(20)]


def test_the_same_seed_keeps_the_same_utterances_whatever_their_order():
    shuffled = UTTS[:]
    random.Random(3).shuffle(shuffled)
    a = take_subset(UTTS, SubsetOptions(fraction=0.5, seed=1))
    b = take_subset(shuffled, SubsetOptions(fraction=0.5, seed=1))
    assert len(a) == 10 and {u.utt_id for u in a} == {u.utt_id for u in b}
    assert a == [u for u in UTTS if u in a]  # original order
    assert {u.utt_id for u in take_subset(UTTS, SubsetOptions(fraction=0.5, seed=2))} != {u.utt_id for u in a}


def test_the_log_says_what_was_kept(caplog):
    caplog.set_level("INFO", logger="speechforge.data.subset")
    take_subset(UTTS, SubsetOptions(utterances=3, seed=4))
    assert "data.subset: kept 3 of 20 utterances (" in caplog.text and " of 0.011 h)" in caplog.text


def test_utterances_and_hours_budgets():
    assert len(take_subset(UTTS, SubsetOptions(utterances=7))) == 7
    kept = take_subset(UTTS, SubsetOptions(hours=10 / 3600))
    seconds = sum(u.duration for u in kept)
    assert 10 <= seconds < 10 + 3  # stops at the first utterance that reaches the budget
    assert take_subset(UTTS, SubsetOptions(fraction=1.0)) == UTTS


@pytest.mark.parametrize(
    "options, message",
    [
        (SubsetOptions(fraction=0.5, hours=1.0), "exactly one of fraction, utterances, hours; got fraction, hours"),
        (SubsetOptions(seed=3), "exactly one of .*; got none"),
        (SubsetOptions(fraction=1.5), r"fraction: must be in \(0, 1\], got 1.5"),
        (SubsetOptions(fraction=-0.1), r"fraction: must be in \(0, 1\], got -0.1"),
        (SubsetOptions(utterances=-2), "utterances: must be positive, got -2"),
        (SubsetOptions(utterances=21), "utterances: 21 asked, the training set has 20"),
        (SubsetOptions(hours=1.0), "hours: 1.0 h asked, the training set has 0.011 h"),
    ],
)
def test_bad_options_name_the_key(options, message):
    with pytest.raises(ConfigError, match=f"data.subset.*{message}"):
        take_subset(UTTS, options)
