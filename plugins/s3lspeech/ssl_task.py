"""The ``ssl`` task: S3LSpeech's teacher-student contrastive pretraining on untranscribed audio.

The student (encoder + projection head + predictor) reads noisy, SpecAugmented features; the
teacher (an EMA copy of the student's encoder and projection head, never updated by gradients)
reads the clean features delayed by a random shift, so that neither can match frames by
position. The loss is equation 2 of the paper: per frame, the cosine similarity of the
student's frame to the teacher's same frame against the teacher's other frames of the same
utterance, over a temperature.
"""
from __future__ import annotations

import copy
import math
import random
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechforge.errors import ConfigError
from speechforge.interfaces import Progress, Task
from speechforge.registry import build_component
from speechforge_plugins.s3lspeech.augment import MultiConditionNoise, NoisySpecAugment, shift_right

MOMENTUM_SCHEDULES = ("constant", "cosine")


def contrastive_loss(student: Tensor, teacher: Tensor, lengths: Tensor, temperature: float) -> Tensor:
    """Equation 2, averaged over the valid frames of the batch.

    Args: student z (B, T, D), teacher z' (B, T, D), lengths (B,), temperature tau.
    Returns: mean over valid frames i of -log softmax_j(phi(z_i, z'_j) / tau)[i], j over the
        valid frames of the same utterance.
    """
    similarity = F.normalize(student, dim=-1) @ F.normalize(teacher, dim=-1).transpose(1, 2)  # (B, T, T)
    valid = torch.arange(student.size(1), device=student.device) < lengths[:, None]  # (B, T)
    logits = (similarity / temperature).masked_fill(~valid[:, None, :], float("-inf"))
    positive = torch.diagonal(logits, dim1=1, dim2=2)  # (B, T)
    per_frame = torch.logsumexp(logits, dim=-1) - positive
    return per_frame[valid].mean()


def ema_momentum(base: float, schedule: str, fraction: float) -> float:
    """The teacher's momentum: ``base`` throughout (``constant``), or rising from ``base`` to 1
    along half a cosine over the run's fraction (``cosine``, as in BYOL)."""
    if schedule == "constant":
        return base
    return 1.0 - (1.0 - base) * (math.cos(math.pi * min(max(fraction, 0.0), 1.0)) + 1.0) / 2.0


class Predictor(nn.Module):
    """Conv1d {256, 5, 1} x2 with GELU, then Conv1d {256, 1, 1}: (B, T, D) -> (B, T, D)."""

    def __init__(self, dim: int, kernel: int = 5) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv1d(dim, dim, kernel, padding=kernel // 2), nn.GELU(),
            nn.Conv1d(dim, dim, kernel, padding=kernel // 2), nn.GELU(),
            nn.Conv1d(dim, dim, 1),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x.transpose(1, 2)).transpose(1, 2)


class SSLTask(Task):
    """Student/EMA-teacher contrastive pretraining (module docstring).

    Keys: ``encoder`` (the student's; a ``layer_table`` encoder for S3LSpeech), ``frontend``,
    ``projection_dim`` (256), ``temperature``, ``momentum`` (teacher EMA, 0.999),
    ``momentum_schedule`` (constant | cosine over progress.fraction), ``max_shift`` (teacher
    delay in encoder output frames, drawn from [0, max_shift]), ``spec_augment`` and ``noise``
    (keys of :class:`NoisySpecAugment` and :class:`MultiConditionNoise`, or null for none).
    The teacher is updated after each optimizer step by the plugin's ``after_train_step``.
    """

    needs_transcripts = False

    def __init__(
        self,
        *,
        encoder: Mapping[str, Any],
        frontend: Mapping[str, Any] | None = None,
        projection_dim: int = 256,
        temperature: float = 0.1,
        momentum: float = 0.999,
        momentum_schedule: str = "constant",
        max_shift: int = 2,
        spec_augment: Mapping[str, Any] | None = None,
        noise: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if momentum_schedule not in MOMENTUM_SCHEDULES:
            raise ConfigError(f"momentum_schedule: must be one of {', '.join(MOMENTUM_SCHEDULES)}, got {momentum_schedule!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ConfigError(f"momentum: must be in [0, 1], got {momentum}")
        if temperature <= 0:
            raise ConfigError(f"temperature: must be positive, got {temperature}")
        self.frontend = build_component("frontend", frontend or {"type": "fbank", "num_mel_bins": 80}, "frontend")
        self.encoder = build_component("encoder", encoder, "encoder", input_dim=self.frontend.output_dim)
        self.projection = nn.Linear(self.encoder.output_dim, projection_dim)
        self.predictor = Predictor(projection_dim)
        self.teacher_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.teacher_projection = copy.deepcopy(self.projection).requires_grad_(False)
        self.noise = MultiConditionNoise(**noise) if noise is not None else None
        self.spec_augment = NoisySpecAugment(**spec_augment) if spec_augment is not None else None
        self.temperature, self.max_shift = temperature, max_shift
        self.momentum, self.momentum_schedule = momentum, momentum_schedule

    def student_pairs(self) -> list[tuple[nn.Parameter, nn.Parameter]]:
        """(teacher, student) parameters in matching order."""
        teacher = [*self.teacher_encoder.parameters(), *self.teacher_projection.parameters()]
        student = [*self.encoder.parameters(), *self.projection.parameters()]
        return list(zip(teacher, student, strict=True))

    @torch.no_grad()
    def update_teacher(self, progress: Progress | None = None) -> float:
        """teacher <- m teacher + (1 - m) student; returns m for this step."""
        m = ema_momentum(self.momentum, self.momentum_schedule, progress.fraction if progress else 0.0)
        for teacher, student in self.student_pairs():
            teacher.lerp_(student, 1.0 - m)
        for teacher, student in zip(self.teacher_encoder.buffers(), self.encoder.buffers(), strict=True):
            teacher.copy_(student)
        return m

    def forward(self, batch: Mapping[str, Tensor], progress: Progress | None = None) -> dict[str, Tensor]:
        speech, speech_lens = batch["speech"], batch["speech_lens"]
        clean, feat_lens = self.frontend(speech, speech_lens)  # (B, T, F)
        noisy = self.noise(speech, speech_lens) if self.noise is not None else speech
        student_feats, _ = self.frontend(noisy, speech_lens)
        if self.spec_augment is not None:
            student_feats = self.spec_augment(student_feats)
        student, lengths = self.encoder(student_feats, feat_lens)  # (B, T', D)
        z = self.predictor(self.projection(student))  # (B, T', P)
        shift = random.randint(0, self.max_shift) if self.training else 0
        with torch.no_grad():
            delayed, delayed_lens = shift_right(clean, feat_lens, shift * self.encoder.subsampling_rate)
            teacher, _ = self.teacher_encoder(delayed, delayed_lens)
            z_teacher = self.teacher_projection(teacher[:, shift:][:, : z.size(1)])  # realigned to the student
        frames = min(z.size(1), z_teacher.size(1))
        lengths = lengths.clamp(max=frames)
        loss = contrastive_loss(z[:, :frames], z_teacher[:, :frames], lengths, self.temperature)
        return {"loss": loss}
