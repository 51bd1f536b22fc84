"""Audio reading with soundfile; errors name the file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import torch

from speechforge.errors import DataError


def load_audio(path: str | Path, sample_rate: int, resample: bool = False) -> torch.Tensor:
    """Read a mono waveform as float32 in [-1, 1].

    Args:
        resample: bring another rate to ``sample_rate`` (torchaudio's windowed-sinc
            resampler) instead of refusing it; training data keeps refusing, since a corpus
            at another rate is a preparation mistake, while one file to decode is not.

    Raises DataError when the file cannot be read, has the wrong rate (without ``resample``)
    or is empty.
    Returns: (S,).
    """
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, soundfile.LibsndfileError) as error:
        raise DataError(f"{path}: unreadable audio: {error}") from error
    if rate != sample_rate and not resample:
        raise DataError(f"{path}: sample rate {rate} Hz, expected {sample_rate} Hz")
    if samples.shape[0] == 0:
        raise DataError(f"{path}: no samples")
    wave = torch.from_numpy(np.ascontiguousarray(samples.mean(axis=1)))
    if rate != sample_rate:
        import torchaudio

        wave = torchaudio.functional.resample(wave, rate, sample_rate)
    return wave


def audio_duration(path: str | Path) -> float:
    """Seconds of audio, from the header only."""
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, OSError, soundfile.LibsndfileError) as error:
        raise DataError(f"{path}: unreadable audio: {error}") from error
    return info.frames / info.samplerate
