"""Dynamic batches bounded by seconds of (padded) audio, bucketed by duration.

Deterministic from (seed, epoch); each DDP rank takes every world_size-th batch and all ranks
get the same number of batches (a rank with fewer would leave the others waiting forever).
"""
from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from torch.utils.data import Sampler


class DurationBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices.

    Args:
        durations: seconds per utterance.
        max_seconds: budget per batch: longest utterance × batch size (what padding costs).
        num_buckets: utterances are shuffled within this many duration buckets before batching,
            so batches vary between epochs while staying length-homogeneous.
        shuffle: shuffle buckets and batch order each epoch (training).
        max_batch_size: optional cap on utterances per batch.
    """

    def __init__(
        self,
        durations: Sequence[float],
        max_seconds: float,
        num_buckets: int = 10,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        max_batch_size: int = 0,
    ) -> None:
        if max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive, got {max_seconds}")
        self.durations = list(durations)
        self.max_seconds = max_seconds
        self.num_buckets = max(1, num_buckets)
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.max_batch_size = max_batch_size
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's order; skip the first ``start_batch`` batches (resuming)."""
        self.epoch = epoch
        self.start_batch = start_batch

    def _batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 100003 + self.epoch)
        order = sorted(range(len(self.durations)), key=lambda i: self.durations[i])
        if self.shuffle:
            size = -(-len(order) // self.num_buckets)
            buckets = [order[i : i + size] for i in range(0, len(order), size)]
            for bucket in buckets:
                rng.shuffle(bucket)
            order = [i for bucket in buckets for i in bucket]
        batches: list[list[int]] = []
        batch: list[int] = []
        longest = 0.0
        for index in order:
            longest_if_added = max(longest, self.durations[index])
            full = self.max_batch_size and len(batch) >= self.max_batch_size
            if batch and (longest_if_added * (len(batch) + 1) > self.max_seconds or full):
                batches.append(batch)
                batch, longest_if_added = [], self.durations[index]
            batch.append(index)
            longest = longest_if_added
        if batch:
            batches.append(batch)
        if self.shuffle:
            rng.shuffle(batches)
        per_rank = len(batches) // self.world_size if self.world_size > 1 else len(batches)
        return batches[self.rank :: self.world_size][:per_rank]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches()[self.start_batch :]

    def __len__(self) -> int:
        return max(0, len(self._batches()) - self.start_batch)
