"""The student-only augmentations of S3LSpeech (multi-condition noise, SpecAugment with
noise-filled frequency masks) and the teacher's random positional shift."""
from __future__ import annotations

import random
from pathlib import Path

import torch
from torch import Tensor, nn

from speechforge.data.audio import load_audio
from speechforge.errors import ConfigError


def coloured_noise(length: int, exponent: float, generator: torch.Generator | None = None) -> Tensor:
    """Noise of power spectrum 1/f^exponent (0 white, 1 pink, 2 brown), unit variance. (S,)."""
    white = torch.randn(length, generator=generator)
    spectrum = torch.fft.rfft(white)
    freqs = torch.fft.rfftfreq(length).clamp(min=1.0 / length)
    noise = torch.fft.irfft(spectrum / freqs ** (exponent / 2), n=length)
    return (noise - noise.mean()) / noise.std().clamp(min=1e-8)


def mix_at_snr(speech: Tensor, noise: Tensor, snr_db: Tensor, lengths: Tensor) -> Tensor:
    """speech (B, S) + noise (B, S) scaled to ``snr_db`` (B,) over each valid length; padding
    stays zero."""
    valid = (torch.arange(speech.size(1), device=speech.device) < lengths[:, None]).to(speech.dtype)
    count = lengths.clamp(min=1).to(speech.dtype)
    speech_power = (speech.pow(2) * valid).sum(1) / count
    noise_power = ((noise * valid).pow(2).sum(1) / count).clamp(min=1e-10)
    scale = torch.sqrt(speech_power / (noise_power * 10 ** (snr_db / 10)))
    return speech + noise * valid * scale[:, None]


class MultiConditionNoise(nn.Module):
    """Adds noise at an SNR drawn uniformly from ``snr_db`` to each waveform, in training only.

    With ``noise_dir`` the noise is a random crop of a random file there (``*.wav``, ``*.flac``);
    without it, each utterance gets coloured noise (exponent in [0, 2]) or babble (the sum of
    ``babble_speakers`` other utterances of the batch), whichever ``babble_prob`` picks.
    """

    def __init__(self, *, snr_db: tuple[float, float] = (0.0, 20.0), noise_dir: str | None = None,
                 babble_prob: float = 0.5, babble_speakers: int = 3, sample_rate: int = 16000) -> None:
        super().__init__()
        low, high = snr_db
        if low > high:
            raise ConfigError(f"noise.snr_db: [low, high] with low <= high, got {list(snr_db)}")
        self.snr_db, self.babble_prob, self.babble_speakers = (low, high), babble_prob, babble_speakers
        self.noises: list[Tensor] = []
        if noise_dir is not None:
            files = sorted(p for p in Path(noise_dir).iterdir() if p.suffix in (".wav", ".flac"))
            if not files:
                raise ConfigError(f"noise.noise_dir: {noise_dir}: no .wav or .flac files")
            self.noises = [load_audio(p, sample_rate) for p in files]

    def noise_for(self, speech: Tensor, index: int) -> Tensor:
        """Noise as long as ``speech`` (B, S) for utterance ``index``. (S,)."""
        length = speech.size(1)
        if self.noises:
            source = random.choice(self.noises)
            source = source.repeat(length // source.numel() + 1)
            start = random.randrange(source.numel() - length + 1)
            return source[start : start + length].to(speech)
        others = [i for i in range(speech.size(0)) if i != index]
        if others and random.random() < self.babble_prob:
            chosen = random.sample(others, min(self.babble_speakers, len(others)))
            return speech[chosen].sum(0)
        return coloured_noise(length, random.uniform(0.0, 2.0)).to(speech)

    def forward(self, speech: Tensor, lengths: Tensor) -> Tensor:
        """speech (B, S), lengths (B,) -> noisy speech (B, S)."""
        if not self.training:
            return speech
        noise = torch.stack([self.noise_for(speech, i) for i in range(speech.size(0))])
        snr = torch.empty(speech.size(0), device=speech.device).uniform_(*self.snr_db)
        return mix_at_snr(speech, noise, snr, lengths)


class NoisySpecAugment(nn.Module):
    """SpecAugment as S3LSpeech uses it: time masks set to zero, frequency masks filled with
    Gaussian noise (N(0, 1), the scale of normalised features). In training only."""

    def __init__(self, *, num_time_masks: int = 2, time_width: int = 20, num_freq_masks: int = 2, freq_width: int = 10) -> None:
        super().__init__()
        self.num_time_masks, self.time_width = num_time_masks, time_width
        self.num_freq_masks, self.freq_width = num_freq_masks, freq_width

    @staticmethod
    def band(batch: int, size: int, width: int, count: int, device: torch.device) -> Tensor:
        """(B, size) bool, True inside ``count`` random bands of width up to ``width``."""
        mask = torch.zeros(batch, size, dtype=torch.bool, device=device)
        positions = torch.arange(size, device=device)
        for _ in range(count):
            w = torch.randint(0, width + 1, (batch, 1), device=device)
            start = (torch.rand(batch, 1, device=device) * (size - w + 1).clamp(min=1)).long()
            mask |= (positions >= start) & (positions < start + w)
        return mask

    def forward(self, feats: Tensor) -> Tensor:
        """feats (B, T, F) -> augmented (B, T, F)."""
        if not self.training:
            return feats
        batch, frames, bins = feats.shape
        time = self.band(batch, frames, self.time_width, self.num_time_masks, feats.device)[:, :, None]
        freq = self.band(batch, bins, self.freq_width, self.num_freq_masks, feats.device)[:, None, :]
        feats = torch.where(freq, torch.randn_like(feats), feats)
        return feats.masked_fill(time, 0.0)


def shift_right(feats: Tensor, lengths: Tensor, frames: int) -> tuple[Tensor, Tensor]:
    """Delay every utterance by ``frames`` zero frames: (B, T, F) -> (B, T + frames, F)."""
    return nn.functional.pad(feats, (0, 0, frames, 0)), lengths + frames
