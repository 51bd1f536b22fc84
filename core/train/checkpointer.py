"""A run's checkpoints in ``EXP/checkpoints``: what one holds, writing, pruning, resuming.

A checkpoint holds the model, optimizer, scheduler, gradient scaler, the run's position
(``progress``), the global RNG states and whatever ``checkpoint_save`` hooks add;
``checkpoints/latest`` names the newest. Only rank 0 writes, every rank resumes.
"""
from __future__ import annotations

import logging
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from speechforge.config import atomic_write_text
from speechforge.plugins import PluginHost
from speechforge.train.checkpoint import load_checkpoint, save_checkpoint
from speechforge.train.parallel_strategy import ParallelStrategy
from speechforge.train.training_state import TrainingState

log = logging.getLogger(__name__)


def rng_states() -> dict[str, Any]:
    """The global random states: torch's CPU generator, Python's, and every CUDA device's
    when CUDA is in use (dropout masks on a GPU come from the CUDA generators)."""
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Undo :func:`rng_states`; CUDA states are restored when saved and CUDA is available, on
    as many devices as both the checkpoint and this machine have (a run may resume on fewer)."""
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        for device, state in enumerate(states["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, device)


class Checkpointer:
    """Saves and restores one run's model, optimizer, scheduler and scaler in ``directory``."""

    def __init__(
        self,
        directory: Path,
        strategy: ParallelStrategy,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: LRScheduler,
        scaler: torch.amp.GradScaler,
        host: PluginHost,
        keep_step_checkpoints: int,
        is_main: bool,
    ) -> None:
        self.directory = directory
        self.strategy = strategy
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scaler = scaler
        self.host = host
        self.keep_step_checkpoints = keep_step_checkpoints
        self.is_main = is_main

    def latest(self) -> Path | None:
        """The checkpoint ``checkpoints/latest`` names, or None before the first save."""
        pointer = self.directory / "latest"
        return self.directory / pointer.read_text().strip() if pointer.is_file() else None

    def save(self, name: str, training: TrainingState) -> Path:
        """Write ``<name>.pt`` (rank 0) and point ``latest`` at it; old ``step_*.pt`` beyond
        ``keep_step_checkpoints`` are removed. Every rank must call it (FSDP gathers)."""
        state: dict[str, Any] = {
            "model": self.strategy.model_state_dict(self.model),
            "optimizer": self.strategy.optimizer_state_dict(self.model, self.optimizer),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "progress": asdict(training),
            "rng": rng_states(),
        }
        path = self.directory / f"{name}.pt"
        if self.is_main:
            self.host.hook.checkpoint_save(state=state)
            save_checkpoint(state, path)
            atomic_write_text(self.directory / "latest", f"{path.name}\n")
            self._prune_step_checkpoints()
        return path

    def _prune_step_checkpoints(self) -> None:
        """Remove the oldest ``step_*.pt`` beyond ``keep_step_checkpoints``, never the one
        ``latest`` names (a resumed run's newest may be older than a previous run's files)."""
        current = self.latest()
        steps = sorted(
            (p for p in self.directory.glob("step_*.pt") if p != current), key=lambda p: int(p.stem.split("_")[1])
        )
        kept = self.keep_step_checkpoints - (current is not None and current.name.startswith("step_"))
        for old in steps[: max(0, len(steps) - kept)]:
            old.unlink(missing_ok=True)

    def resume(self) -> TrainingState | None:
        """Load everything from ``latest`` and return the run's position; None when there is
        nothing to resume."""
        path = self.latest()
        if path is None:
            return None
        state = load_checkpoint(path)
        self.strategy.load(self.model, self.optimizer, state, path)
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        restore_rng_states(state["rng"])
        self.host.hook.checkpoint_load(state=state, model=self.model)
        training = TrainingState(**state["progress"])
        log.info("resumed from %s at step %d (epoch %d, batch %d)", path, training.step, training.epoch, training.batch_in_epoch)
        return training
