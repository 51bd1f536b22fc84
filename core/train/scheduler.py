"""Learning-rate schedules: linear warm-up, then constant, Noam (inverse square root),
linear or cosine decay to ``final_lr_ratio`` of the peak at ``total_steps``."""
from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

SCHEDULES = ("constant", "noam", "linear", "cosine")


def lr_factor(step: int, schedule: str, warmup_steps: int, total_steps: int, final_lr_ratio: float) -> float:
    """Multiplier of the peak learning rate after ``step`` optimizer steps."""
    if schedule not in SCHEDULES:
        raise ValueError(f"scheduler.type: unknown schedule {schedule!r}; known: {', '.join(SCHEDULES)}")
    step = max(step, 1)
    if warmup_steps and step < warmup_steps:
        return step / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "noam":
        return math.sqrt(max(warmup_steps, 1) / step)
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "linear":
        return 1.0 - (1.0 - final_lr_ratio) * progress
    return final_lr_ratio + (1.0 - final_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(
    optimizer: Optimizer, schedule: str, warmup_steps: int, total_steps: int, final_lr_ratio: float
) -> LambdaLR:
    lr_factor(1, schedule, warmup_steps, total_steps, final_lr_ratio)  # fail early on a bad name
    return LambdaLR(optimizer, lambda step: lr_factor(step, schedule, warmup_steps, total_steps, final_lr_ratio))
