"""Global CMVN statistics of the frontend's features over a data dir."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from speechforge.config import atomic_write_text
from speechforge.data.audio import load_audio
from speechforge.data.data_dir import read_data_dir
from speechforge.errors import DataError

log = logging.getLogger(__name__)


@torch.no_grad()
def compute_cmvn(data_dir: Path, frontend: torch.nn.Module, max_utterances: int = 0) -> dict[str, list[float]]:
    """Mean and inverse standard deviation per feature dimension.

    Args:
        frontend: a frontend with ``log_mel(waveforms, lengths)`` (features before CMVN).
        max_utterances: use only the first N utterances (0: all).
    """
    utterances = read_data_dir(data_dir, transcripts=False)  # audio is all it needs
    if max_utterances:
        utterances = utterances[:max_utterances]
    total = squares = None
    frames = 0
    skipped = 0
    for utt in utterances:
        try:
            wave = load_audio(utt.audio, frontend.sample_rate)
        except DataError as error:
            skipped += 1
            log.warning("cmvn: skipping %s", error)
            continue
        feats, _ = frontend.log_mel(wave.unsqueeze(0), torch.tensor([wave.numel()]))
        feats = feats[0].double()  # (T, F)
        total = feats.sum(0) if total is None else total + feats.sum(0)
        squares = feats.square().sum(0) if squares is None else squares + feats.square().sum(0)
        frames += feats.size(0)
    if not frames:
        raise DataError(f"{data_dir}: no readable audio to compute CMVN from")
    mean = total / frames
    var = (squares / frames - mean.square()).clamp(min=1e-8)
    log.info("cmvn: %d frames from %d utterances (%d skipped)", frames, len(utterances) - skipped, skipped)
    return {"mean": mean.tolist(), "istd": var.rsqrt().tolist(), "frames": frames}


def save_cmvn(stats: dict, path: Path) -> None:
    atomic_write_text(path, json.dumps(stats))
