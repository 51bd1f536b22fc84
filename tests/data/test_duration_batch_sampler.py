"""Dynamic batching: budget, coverage, determinism, DDP sharding, resuming mid-epoch."""
from __future__ import annotations

import random

import pytest

from speechforge.data.duration_batch_sampler import DurationBatchSampler

DURATIONS = [random.Random(0).uniform(1.0, 15.0) for _ in range(200)]


def test_budget_counts_padding_and_every_index_appears_once():
    sampler = DurationBatchSampler(DURATIONS, max_seconds=60)
    batches = list(sampler)
    for batch in batches:
        assert len(batch) == 1 or max(DURATIONS[i] for i in batch) * len(batch) <= 60
    assert sorted(i for b in batches for i in b) == list(range(200))


def test_batches_are_length_homogeneous():
    batches = list(DurationBatchSampler(DURATIONS, max_seconds=60, num_buckets=10))
    spread = [max(DURATIONS[i] for i in b) - min(DURATIONS[i] for i in b) for b in batches]
    assert sum(spread) / len(spread) < 2.0  # random batches would spread ~10 s


def test_deterministic_per_epoch_and_different_across_epochs():
    a, b = DurationBatchSampler(DURATIONS, 60, seed=1), DurationBatchSampler(DURATIONS, 60, seed=1)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)


def test_ranks_get_disjoint_batches_of_equal_count():
    shards = [list(DurationBatchSampler(DURATIONS, 60, rank=r, world_size=3)) for r in range(3)]
    assert len({len(s) for s in shards}) == 1
    seen = [i for s in shards for b in s for i in b]
    assert len(seen) == len(set(seen))


def test_start_batch_skips_what_was_done():
    sampler = DurationBatchSampler(DURATIONS, 60, seed=2)
    sampler.set_epoch(3)
    full = list(sampler)
    sampler.set_epoch(3, start_batch=5)
    assert list(sampler) == full[5:] and len(sampler) == len(full) - 5


def test_max_batch_size_and_bad_budget():
    assert max(len(b) for b in DurationBatchSampler([1.0] * 50, 1000, max_batch_size=7)) == 7
    with pytest.raises(ValueError, match="max_seconds must be positive, got 0"):
        DurationBatchSampler(DURATIONS, 0)
