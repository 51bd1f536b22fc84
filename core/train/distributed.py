"""torchrun integration: one process per device, gloo on CPU, nccl on CUDA."""
from __future__ import annotations

import datetime
import gc
import importlib
import logging
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from speechforge.errors import RankFailure
from speechforge.train.roll_call import RollCall, describe, is_collective_failure

log = logging.getLogger(__name__)

# DTensor memoizes sharding and redistribution plans keyed by specs whose DeviceMesh holds the
# process group (FSDP's parameters are DTensors). (module, attribute path, clear method); private
# torch names, so a missing one is skipped with a warning rather than failing the run's end.
_DTENSOR_CACHES = (
    ("torch.distributed.tensor.debug", "_clear_sharding_prop_cache", None),
    ("torch.distributed.tensor._redistribute", "clear_redistribute_planner_cache", None),
    ("torch.distributed.tensor._redistribute", "_gen_transform_infos", "cache_clear"),
    ("torch.distributed.tensor._collective_utils", "MeshTopoInfo.build_from_mesh", "cache_clear"),
)


@dataclass(frozen=True)
class DistributedContext:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(timeout_s: float = 1800.0) -> DistributedContext:
    """Read torchrun's environment; start the process group when there are several ranks.

    ``timeout_s`` bounds how long a collective waits for the other ranks (``train.ddp_timeout_s``):
    when one dies or hangs, the others fail after it instead of hanging too, and
    :func:`explain_rank_failure` names it."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        # Its functions bind ``group=group.WORLD`` as default arguments at import; imported after
        # the group starts (torch.distributed.fsdp imports it), they would hold it for good.
        importlib.import_module("torch.distributed.nn.functional")
        try:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(seconds=timeout_s))
        except (dist.DistError, ValueError) as error:  # a rank never came; MASTER_ADDR unset
            raise RankFailure(
                f"rank {rank}: the process group of {world_size} ranks did not start ({describe(error)}); "
                "start every rank with the same MASTER_ADDR and MASTER_PORT, or raise train.ddp_timeout_s"
            ) from error
    return DistributedContext(rank, local_rank, world_size, device)


def close_distributed(wait: bool = True) -> None:
    """Close the process group, after every rank got here when ``wait``. Without ``wait`` (a
    rank that failed), it only unregisters the group: waiting for ranks that never come hangs.

    ``destroy_process_group`` only unregisters the group; the group, with gloo's worker threads,
    lives while anything references it. A worker thread that drops the last reference to a
    finished collective frees its tensors, which needs the GIL; during interpreter shutdown
    Python ends that thread inside a noexcept destructor and the rank aborts ("terminate called
    without an active exception"). So the group is freed here, its destructor joining those
    threads while Python still runs. The caller must have dropped the model first (FSDP and DDP
    state hold the group)."""
    if not dist.is_initialized():
        return
    if not wait:
        dist.destroy_process_group()
        return
    dist.barrier()
    group = dist.group.WORLD
    dist.destroy_process_group()
    _clear_dtensor_caches()
    gc.collect()  # FSDP state and DTensors sit in reference cycles
    if sys.getrefcount(group) > 2:  # ``group`` and getrefcount's own argument
        log.warning("the process group is still referenced after closing; its threads may outlive the interpreter")
    del group  # the last reference: ProcessGroupGloo's destructor joins its threads


def explain_rank_failure(error: BaseException) -> RankFailure | None:
    """Call while ``error`` ends this rank's part of a distributed run, before the group closes.

    A collective that failed (another rank died or hangs) becomes the error naming the ranks
    that ended the run (:class:`~speechforge.train.roll_call.RollCall`); any other error is
    left in the run's store for the other ranks to name, and None is returned (this rank
    reports its own error). None, too, outside a distributed run."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return None
    store = _group_store()
    if store is None:
        return None
    roll_call = RollCall(store, dist.get_rank(), dist.get_world_size())
    if is_collective_failure(error):
        return roll_call.explain()
    roll_call.record(error)
    return None


def _group_store() -> dist.Store | None:
    """The store the default process group was made from (a private torch name: when it is
    gone, failures are reported as torch raises them, with a warning)."""
    try:
        return dist.distributed_c10d._get_default_store()
    except AttributeError:
        log.warning("torch has no distributed_c10d._get_default_store any more: a failed rank cannot be named")
        return None


def _clear_dtensor_caches() -> None:
    if "torch.distributed.tensor" not in sys.modules:
        return
    for module_name, path, method in _DTENSOR_CACHES:
        try:
            target = importlib.import_module(module_name)
            for name in path.split("."):
                target = getattr(target, name)
            (getattr(target, method) if method else target)()
        except (ImportError, AttributeError):
            log.warning("torch has no %s.%s any more: DTensor's caches may keep the process group alive", module_name, path)


def all_reduce_flag(flag: bool, context: DistributedContext) -> bool:
    """True on every rank when it is True on any rank."""
    if not context.enabled:
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=context.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def all_reduce_sum(values: list[float], context: DistributedContext) -> list[float]:
    if not context.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor)
    return tensor.tolist()
