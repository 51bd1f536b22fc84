"""How a model is spread over the ranks of a run: one process, DDP or FSDP.

Everything that differs between them lives in one object, so the trainer and the checkpointer
never branch on ``train.strategy``: wrapping the model, whether a micro-batch may skip the
gradient sync, and the full (unsharded, CPU) state dicts of the model and the optimizer that a
checkpoint holds and loads. Checkpoints are the same whatever wrote them: a run saved under
FSDP resumes on one process and the other way round.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from speechforge.errors import ConfigError
from speechforge.train.checkpoint import load_model_weights
from speechforge.train.distributed import DistributedContext

STRATEGIES = ("ddp", "fsdp")


class ParallelStrategy:
    """A single process: the model as it is. DDP and FSDP override what they change."""

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module the training forward runs through (before the optimizer is made: FSDP
        replaces the parameters)."""
        return model

    def sync_context(self, wrapped: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
        """Context of one micro-batch's forward and backward; ``sync`` is False for all but
        the last of an accumulation window, whose gradients then need no all-reduce yet."""
        return contextlib.nullcontext()

    def model_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The whole model's tensors on CPU (on every rank; rank 0 writes them)."""
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}

    def optimizer_state_dict(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        return optimizer.state_dict()

    def load(self, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any], source: Path) -> None:
        """Load a checkpoint's ``model`` and ``optimizer`` entries; ``source`` names it in errors."""
        load_model_weights(model, state["model"], source)
        optimizer.load_state_dict(state["optimizer"])


class _DistributedDataParallel(ParallelStrategy):
    def __init__(self, context: DistributedContext) -> None:
        self.context = context

    def wrap(self, model: nn.Module) -> nn.Module:
        device_ids = [self.context.local_rank] if self.context.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=False)

    def sync_context(self, wrapped: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext() if sync else wrapped.no_sync()


class _FullyShardedDataParallel(ParallelStrategy):
    """FSDP2 (``fully_shard``) on every ``*Block`` module and the model; state dicts are
    gathered to full CPU tensors for checkpoints and scattered back on load."""

    def wrap(self, model: nn.Module) -> nn.Module:
        from torch.distributed.fsdp import fully_shard

        for module in model.modules():
            if module is not model and type(module).__name__.endswith("Block"):
                fully_shard(module)
        return fully_shard(model)

    def model_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        return get_model_state_dict(model, options=self._full(cpu_offload=True))

    def optimizer_state_dict(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        return get_optimizer_state_dict(model, optimizer, options=self._full(cpu_offload=True))

    def load(self, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any], source: Path) -> None:
        from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

        set_model_state_dict(model, state["model"], options=self._full())
        set_optimizer_state_dict(model, optimizer, state["optimizer"], options=self._full())

    @staticmethod
    def _full(cpu_offload: bool = False) -> Any:
        from torch.distributed.checkpoint.state_dict import StateDictOptions

        return StateDictOptions(full_state_dict=True, cpu_offload=cpu_offload)


def make_strategy(name: str, context: DistributedContext) -> ParallelStrategy:
    """The strategy ``train.strategy`` names; a single process runs the model unwrapped
    whatever the name."""
    if name not in STRATEGIES:
        raise ConfigError(f"train.strategy: ddp or fsdp, got {name!r}")
    if not context.enabled:
        return ParallelStrategy()
    return _FullyShardedDataParallel() if name == "fsdp" else _DistributedDataParallel(context)
