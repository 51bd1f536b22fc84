"""torchrun integration: one process per device, gloo on CPU, nccl on CUDA."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


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


def init_distributed() -> DistributedContext:
    """Read torchrun's environment; start the process group when there are several ranks."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(rank, local_rank, world_size, device)


def close_distributed(wait: bool = True) -> None:
    """Close the process group, after every rank got here when ``wait``: PyTorch asks for
    ``destroy_process_group`` before exit, since gloo work left to the interpreter's
    finalization can abort it. Without ``wait`` (a rank that failed), it closes at once:
    waiting for ranks that will never come would hang."""
    if not dist.is_initialized():
        return
    if wait:
        dist.barrier()
    dist.destroy_process_group()


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
