"""Naming the rank that ended a distributed run, from the run's key-value store.

A rank that fails on its own (bad data, a bug) leaves its reason in the store before it exits.
A rank that is killed outright (SIGKILL, the OOM killer, a lost node) leaves nothing; the other
ranks only see a collective fail: at once with gloo (its connection closes), or after
``train.ddp_timeout_s`` when the rank hangs. Each of them then answers a roll call and waits
``ROLL_CALL_S`` for the others: the ranks that neither answered nor left a reason are named
as dead or hung. Polling reads two counters, so a roll call costs O(1) store requests per rank
until the end, where the missing ranks are looked up once.

The store is the one the process group was made from: torchrun's agent holds it, otherwise
rank 0 does, so a dead rank 0 takes it along; that, too, is named.
"""
from __future__ import annotations

import os
import time

import torch.distributed as dist

from speechforge.errors import RankFailure, SpeechforgeError

#: How long a rank that saw a collective fail waits for the others to answer. Ranks that saw
#: the same failure answer within milliseconds; the wait only bounds how long it takes to
#: conclude that a silent rank is gone.
ROLL_CALL_S = 5.0
_POLL_S = 0.1


def describe(error: BaseException) -> str:
    """One line saying why a rank failed: a speechforge error's message, else type and text."""
    if isinstance(error, SpeechforgeError):
        return str(error)
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def is_collective_failure(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is torch.distributed's: a collective or the store
    failed, which another rank's death causes, rather than this rank's own mistake. Gloo raises
    a plain RuntimeError ("Connection closed by peer", "Timed out waiting"), known by the gloo
    source file its message names."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, dist.DistError) or (isinstance(seen, RuntimeError) and "/gloo/" in str(seen)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class RollCall:
    """The failure records of one run's ranks, under ``speechforge/rank_failure/`` in ``store``.

    Args:
        store: the store the process group was made from.
        rank: this process's rank.
        world_size: the number of ranks.
        wait_s: how long :meth:`explain` waits for the other ranks to answer.
    """

    def __init__(self, store: dist.Store, rank: int, world_size: int, wait_s: float = ROLL_CALL_S) -> None:
        self.store = dist.PrefixStore("speechforge/rank_failure/", store)
        self.rank = rank
        self.world_size = world_size
        self.wait_s = wait_s

    def record(self, error: BaseException) -> None:
        """This rank fails on its own: leave the reason for the others (best effort: the store
        may be gone too)."""
        try:
            self.store.set(f"failed/{self.rank}", describe(error))
            self.store.add("failures", 1)
        except dist.DistError:
            pass

    def explain(self) -> RankFailure | None:
        """After a collective failed here: which ranks ended the run, as the error this rank
        stops with; None when every rank answered (the failure was not a lost rank)."""
        ends = f"rank {self.rank} stops too"
        try:
            self.store.set(f"answer/{self.rank}", "1")
            answers = self.store.add("answers", 1)
            deadline = time.monotonic() + self.wait_s
            while not self.store.add("failures", 0) and answers < self.world_size and time.monotonic() < deadline:
                time.sleep(_POLL_S)
                answers = self.store.add("answers", 0)
            failed = self._ranks_with("failed")
            if failed:
                reasons = "; ".join(f"rank {k} failed: {self.store.get(f'failed/{k}').decode()}" for k in failed)
                return RankFailure(f"{reasons} (of {self.world_size} ranks); {ends}")
            answered = set(self._ranks_with("answer"))
            missing = [k for k in range(self.world_size) if k not in answered]
        except dist.DistError:
            holder = "torchrun's agent" if os.environ.get("TORCHELASTIC_RUN_ID") else "rank 0"
            return RankFailure(f"the run's store is gone: {holder}, which held it, died or ended; {ends}")
        if not missing:
            return None
        who, hang, they = ("rank", "hangs", "it") if len(missing) == 1 else ("ranks", "hang", "they")
        return RankFailure(
            f"{who} {', '.join(map(str, missing))} (of {self.world_size}) died or {hang}: a collective failed "
            f"and {they} did not answer within {self.wait_s:g} s; {ends}"
        )

    def _ranks_with(self, record: str) -> list[int]:
        return [k for k in range(self.world_size) if self.store.check([f"{record}/{k}"])]
