"""Learning-rate schedules: linear warm-up, then constant, Noam (inverse square root),
linear or cosine decay to ``final_lr_ratio`` of the peak at ``total_steps``.

With a wall-clock budget (``train.max_minutes``) the decay follows whichever comes first,
steps or time, so a time-budgeted run always ends with a fully decayed learning rate
whatever the machine's speed.
"""
from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

SCHEDULES = ("constant", "noam", "linear", "cosine")


def lr_factor(step: int, schedule: str, warmup_steps: int, total_steps: int, final_lr_ratio: float, time_fraction: float = 0.0) -> float:
    """Multiplier of the peak learning rate after ``step`` optimizer steps, with
    ``time_fraction`` of the wall-clock budget spent (0 when there is no budget)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"scheduler.type: unknown schedule {schedule!r}; known: {', '.join(SCHEDULES)}")
    step = max(step, 1)
    if warmup_steps and step < warmup_steps:
        return step / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "noam":
        return math.sqrt(max(warmup_steps, 1) / step)
    progress = min(1.0, max((step - warmup_steps) / max(1, total_steps - warmup_steps), time_fraction))
    if schedule == "linear":
        return 1.0 - (1.0 - final_lr_ratio) * progress
    return final_lr_ratio + (1.0 - final_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class Schedule:
    """The LambdaLR multiplier; the trainer updates ``time_fraction`` before each step."""

    def __init__(self, schedule: str, warmup_steps: int, total_steps: int, final_lr_ratio: float) -> None:
        lr_factor(1, schedule, warmup_steps, total_steps, final_lr_ratio)  # fail early on a bad name
        self.schedule = schedule
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.final_lr_ratio = final_lr_ratio
        self.time_fraction = 0.0

    def fraction(self, step: int) -> float:
        """Share of the run done after ``step`` optimizer steps: steps over ``total_steps`` or
        the wall-clock budget spent, whichever is further, capped at 1."""
        return min(1.0, max(step / max(1, self.total_steps), self.time_fraction))

    def __call__(self, step: int) -> float:
        return lr_factor(step, self.schedule, self.warmup_steps, self.total_steps, self.final_lr_ratio, self.time_fraction)


def make_scheduler(optimizer: Optimizer, schedule: Schedule) -> LambdaLR:
    return LambdaLR(optimizer, schedule)
