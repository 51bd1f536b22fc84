"""Deterministic random draws, so one seed gives the same corpus on every Python version.

Only ``random.Random.random()`` is guaranteed to give the same sequence across Python versions
(``randrange``, ``choice`` and ``shuffle`` are not), so every draw here is built on it.
"""

from __future__ import annotations

import random
from typing import Sequence, TypeVar

T = TypeVar("T")


def below(rng: random.Random, n: int) -> int:
    """An integer in 0..n-1."""
    return int(rng.random() * n)


def pick(rng: random.Random, items: Sequence[T]) -> T:
    """One of ``items``, each equally likely."""
    return items[below(rng, len(items))]


def uniform(rng: random.Random, low: float, high: float) -> float:
    """A float in [low, high)."""
    return low + (high - low) * rng.random()


def shuffled(rng: random.Random, items: Sequence[T]) -> list[T]:
    """A Fisher-Yates shuffled copy of ``items``."""
    out = list(items)
    for i in range(len(out) - 1, 0, -1):
        j = below(rng, i + 1)
        out[i], out[j] = out[j], out[i]
    return out


def stream(seed: int, purpose: str) -> random.Random:
    """An independent random stream per purpose, so e.g. the train size never shifts test text."""
    return random.Random(f"speechforge-synth/{seed}/{purpose}")
