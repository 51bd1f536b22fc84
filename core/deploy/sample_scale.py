"""Kaldi filterbanks of samples in [-1, 1], as sherpa-onnx computes them for every model but
WeNet's, turned into those of int16-scaled samples, as the fbank frontend's Kaldi mode computes
them in training (WeNet's convention, :data:`~speechforge.modules.fbank_frontend.KALDI_SAMPLE_SCALE`).

Kaldi's log-mel of a bin is ``log(max(E, FLT_EPSILON))`` (kaldi-native-fbank and torchaudio
alike). Scaling the samples by 32768 scales every energy E by 32768², so a bin above the floor
moves by exactly ``2·ln(32768)``. A bin on the floor does not: digital silence (E = 0, whole
frames of zeros) is on the floor at both scales and must stay there. The conversion therefore
shifts every bin but those on the floor, which is exact for silence and for every bin above
the floor; only a bin whose [-1, 1] energy lies strictly between 0 and FLT_EPSILON (an int16
energy below 128, far under any microphone's noise) stays on the floor instead of rising by up
to ``2·ln(32768)``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from speechforge.modules.fbank_frontend import KALDI_SAMPLE_SCALE

#: what scaling the samples by KALDI_SAMPLE_SCALE adds to a log energy
LOG_SCALE = 2.0 * math.log(KALDI_SAMPLE_SCALE)
#: Kaldi's log-mel floor, log(FLT_EPSILON)
LOG_FLOOR = math.log(torch.finfo(torch.float32).eps)
#: values this close to the floor are the floor (two libraries' float logs of one epsilon)
FLOOR_TOLERANCE = 1e-4


def int16_scaled_log_mel(feats: Tensor) -> Tensor:
    """Args: feats (..., F) Kaldi log-mel energies of samples in [-1, 1].
    Returns: (..., F) those of the same samples times 32768."""
    on_floor = feats <= LOG_FLOOR + FLOOR_TOLERANCE  # (..., F)
    return torch.where(on_floor, feats, feats + LOG_SCALE)
