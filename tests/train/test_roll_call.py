"""The roll call that names the rank ending a distributed run, on an in-process store (the
processes' side is tests/train/test_ddp_faults.py)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch.distributed as dist

from speechforge.errors import ConfigError
from speechforge.train.roll_call import RollCall, describe, is_collective_failure


def roll_calls(ranks: list[int], world_size: int, wait_s: float = 0.3) -> list[str | None]:
    """What each of ``ranks`` concludes when they answer together after a collective failed."""
    store = dist.HashStore()
    with ThreadPoolExecutor(len(ranks)) as pool:
        found = list(pool.map(lambda rank: RollCall(store, rank, world_size, wait_s).explain(), ranks))
    return [str(failure) if failure is not None else None for failure in found]


def test_ranks_that_never_answer_are_named_by_every_survivor():
    assert roll_calls([0, 2], 4) == [
        "ranks 1, 3 (of 4) died or hang: a collective failed and they did not answer within 0.3 s; rank 0 stops too",
        "ranks 1, 3 (of 4) died or hang: a collective failed and they did not answer within 0.3 s; rank 2 stops too",
    ]
    assert roll_calls([1], 2) == [
        "rank 0 (of 2) died or hangs: a collective failed and it did not answer within 0.3 s; rank 1 stops too"
    ]


def test_when_every_rank_answers_no_rank_is_blamed():
    assert roll_calls([0, 1], 2, wait_s=30) == [None, None]  # and nobody waits the 30 s


def test_a_rank_that_failed_on_its_own_is_named_with_its_reason():
    store = dist.HashStore()
    RollCall(store, 1, 3).record(ConfigError("data.train: no usable utterances in data/train"))
    RollCall(store, 2, 3).record(RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB"))
    failure = RollCall(store, 0, 3, wait_s=30).explain()  # answers at once: the reasons are there
    assert str(failure) == (
        "rank 1 failed: data.train: no usable utterances in data/train; "
        "rank 2 failed: RuntimeError: CUDA out of memory. (of 3 ranks); rank 0 stops too"
    )


def test_only_torch_distributed_errors_count_as_a_collective_failure():
    try:
        try:
            raise dist.DistBackendError("Connection closed by peer")
        except dist.DistError as error:
            raise RuntimeError("the backward pass failed") from error
    except RuntimeError as wrapped:
        assert is_collective_failure(wrapped)
    gloo = "[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection closed by peer [127.0.0.1]:25235"
    assert is_collective_failure(RuntimeError(gloo))  # what gloo raises when a rank died
    hung = "[/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 2000ms for recv operation to complete"
    assert is_collective_failure(RuntimeError(hung))  # and after train.ddp_timeout_s when one hangs
    assert not is_collective_failure(RuntimeError("CUDA out of memory"))
    assert not is_collective_failure(ValueError("a bug of this rank"))
    assert describe(KeyboardInterrupt()) == "KeyboardInterrupt"


class GoneStore(dist.Store):
    """A store whose host died: every request fails as a TCPStore's then does."""

    def set(self, key, value):
        raise dist.DistNetworkError("Connection reset by peer")

    def add(self, key, value):
        raise dist.DistNetworkError("Connection reset by peer")


def test_a_store_that_is_gone_is_named():
    store = GoneStore()  # held here: the PrefixStore around it does not keep the Python object alive
    failure = RollCall(store, 1, 2).explain()
    assert str(failure) == "the run's store is gone: rank 0, which held it, died or ended; rank 1 stops too"
