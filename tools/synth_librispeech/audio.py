"""Audio post-processing: 22.05 kHz eSpeak output -> 16 kHz, trimmed, level-varied, lightly noisy.

Plain numpy FFTs: no torch in the workers keeps the per-utterance fork cheap.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import SynthError

SAMPLE_RATE = 16000  # LibriSpeech's rate


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling in the frequency domain. The input is zero-padded to
    rate_in/gcd * 2**k samples so both transform sizes are fast and the ratio is exact; the
    top 5% of the output band is rolled off with a raised cosine to avoid ringing. Circular
    wrap-around is harmless because eSpeak output starts and ends in silence."""
    common = math.gcd(rate_in, rate_out)
    up, down = rate_out // common, rate_in // common
    blocks = 1 << max(0, math.ceil(math.log2(max(1, len(x)) / down)))
    n_in, n_out = blocks * down, blocks * up
    spectrum = np.fft.rfft(x, n_in)[: n_out // 2 + 1]
    band = np.arange(len(spectrum)) / (n_out / 2)  # 0 .. 1 = output Nyquist
    if rate_out < rate_in:
        spectrum = spectrum * (0.5 + 0.5 * np.cos(np.pi * np.clip((band - 0.95) / 0.05, 0, 1)))
    y = np.fft.irfft(spectrum, n_out) * (n_out / n_in)
    return y[: math.ceil(len(x) * up / down)]


def _colored_noise(length: int, slope: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with a 1/f**slope power spectrum (0 = white, 1 = pink)."""
    n_fft = 1 << max(1, math.ceil(math.log2(max(1, length))))  # fast size, then cut
    spectrum = np.fft.rfft(rng.standard_normal(n_fft))
    frequencies = np.arange(len(spectrum), dtype=np.float64)
    frequencies[0] = 1.0
    noise = np.fft.irfft(spectrum / frequencies ** (slope / 2), n_fft)[:length]
    return noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)


def finish_audio(pcm: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Resample to 16 kHz, keep 0.1-0.4 s of silence at the ends, set a random speech level,
    add noise at 25-35 dB SNR. Returns int16."""
    x = resample(pcm.astype(np.float64) / 32768.0, rate, SAMPLE_RATE)
    frame = SAMPLE_RATE // 100
    frames = len(x) // frame
    energy = np.sqrt(np.mean(x[: frames * frame].reshape(frames, frame) ** 2, axis=1))
    if frames == 0 or energy.max() <= 1e-6:
        raise SynthError("eSpeak returned silence")
    active = np.flatnonzero(energy > energy.max() * 10 ** (-40 / 20))
    speech = x[active[0] * frame: (active[-1] + 1) * frame]
    speech_rms = np.sqrt(np.mean(energy[active] ** 2))
    level = 10 ** (_np_uniform(rng, -26.0, -18.0) / 20)
    speech = speech * (level / speech_rms)
    lead = np.zeros(int(_np_uniform(rng, 0.10, 0.30) * SAMPLE_RATE))
    tail = np.zeros(int(_np_uniform(rng, 0.15, 0.40) * SAMPLE_RATE))
    y = np.concatenate([lead, speech, tail])
    snr_db = _np_uniform(rng, 25.0, 35.0)
    y += _colored_noise(len(y), _np_uniform(rng, 0.0, 1.5), rng) * level * 10 ** (-snr_db / 20)
    peak = np.abs(y).max()
    if peak > 0.97:
        y *= 0.97 / peak
    return np.round(y * 32767).astype(np.int16)


def _np_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A float in [low, high) from numpy's generator."""
    return float(low + (high - low) * rng.random())
