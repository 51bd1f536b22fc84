"""Where a run stands: what it needs, besides the checkpointed objects, to carry on exactly."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainingState:
    """A run's position, saved as a checkpoint's ``progress`` entry."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # epochs finished
    batch_in_epoch: int = 0  # batches of the current epoch consumed
    elapsed: float = 0.0  # seconds of training so far, over all resumes
