"""Filterbanks of [-1, 1] samples become those of int16-scaled samples exactly: every bin
moves by 2·ln(32768) except those on Kaldi's log floor, which digital silence leaves on the
floor at both scales."""
from __future__ import annotations

import torch
import torchaudio

from speechforge.deploy.sample_scale import LOG_FLOOR, int16_scaled_log_mel
from speechforge.modules.fbank_frontend import KALDI_FBANK, KALDI_SAMPLE_SCALE


def fbank(wave):
    return torchaudio.compliance.kaldi.fbank(wave.unsqueeze(0), num_mel_bins=80, dither=0.0, **KALDI_FBANK)  # (T, 80)


def test_int16_scaled_log_mel_is_the_fbank_of_int16_scaled_samples_silence_included():
    t = torch.arange(8000) / 16000
    tone = 0.3 * torch.sin(2 * torch.pi * 440 * t) + 0.01 * torch.randn(t.numel(), generator=torch.Generator().manual_seed(0))
    wave = torch.cat((tone, torch.zeros(4000), tone))  # 0.25 s of digital silence in the middle
    unit = fbank(wave)
    assert (unit <= LOG_FLOOR + 1e-4).sum() >= 10 * 80  # whole frames on the floor
    got = int16_scaled_log_mel(unit)
    want = fbank(wave * KALDI_SAMPLE_SCALE)
    assert (got - want).abs().max() <= 1e-4
    assert (got - unit).abs().max() > 20  # it did move the rest
