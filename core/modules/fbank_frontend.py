"""Log-mel filterbank frontend with global CMVN and SpecAugment, registered as ``frontend``
``fbank``. Features are computed in the model, batched, so a checkpoint holds everything
from waveform to tokens (CMVN statistics are buffers)."""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torchaudio
from torch import Tensor

from speechforge.errors import ConfigError
from speechforge.interfaces import Frontend
from speechforge.modules.spec_augment import SpecAugment


#: Kaldi fbank settings of the ``kaldi_compatible`` mode: those of sherpa-onnx's feature
#: extractor (kaldi-native-fbank) for WeNet models, so an exported model sees the features it
#: was trained on. Samples are scaled to the int16 range, as sherpa-onnx does for WeNet models.
KALDI_FBANK = {
    "window_type": "povey",
    "snip_edges": False,
    "low_freq": 20.0,
    "high_freq": -400.0,
    "preemphasis_coefficient": 0.97,
    "remove_dc_offset": True,
    "use_energy": False,
}
KALDI_SAMPLE_SCALE = 32768.0


class FbankFrontend(Frontend):
    """25 ms Hann windows every 10 ms, ``num_mel_bins`` log-mel energies (no frame padding at
    the edges, like Kaldi's ``snip_edges``), then ``(x - mean) * istd`` and SpecAugment.

    Keys: ``sample_rate``, ``num_mel_bins``, ``frame_length_ms``, ``frame_shift_ms``,
    ``cmvn_stats`` (a JSON file written by ``speechforge cmvn``), ``spec_augment`` (a mapping
    of :class:`SpecAugment` arguments, or null to disable), ``kaldi_compatible`` and
    ``dither``.

    ``kaldi_compatible: true`` computes Kaldi filterbanks instead
    (``torchaudio.compliance.kaldi.fbank`` with :data:`KALDI_FBANK`: povey window, frames
    centred on every 10 ms with reflected edges, mel bins from 20 Hz to Nyquist - 400 Hz, on
    samples scaled to the int16 range): the features sherpa-onnx computes, which a model needs
    to be exported for it. ``dither`` (in int16 units, Kaldi's 1.0 is typical) adds Gaussian
    noise to each frame in training only; inference never dithers.
    """

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        num_mel_bins: int = 80,
        frame_length_ms: float = 25.0,
        frame_shift_ms: float = 10.0,
        cmvn_stats: str | None = None,
        spec_augment: Mapping[str, Any] | None = None,
        kaldi_compatible: bool = False,
        dither: float = 0.0,
    ) -> None:
        super().__init__()
        if dither < 0:
            raise ConfigError(f"frontend.dither: must be >= 0, got {dither}")
        if dither and not kaldi_compatible:
            raise ConfigError("frontend.dither: only the Kaldi-compatible mode dithers; set kaldi_compatible: true")
        self.sample_rate = sample_rate
        self.output_dim = num_mel_bins
        self.frame_length_ms = frame_length_ms
        self.frame_shift_ms = frame_shift_ms
        self.win_length = int(sample_rate * frame_length_ms / 1000)
        self.hop_length = int(sample_rate * frame_shift_ms / 1000)
        self.kaldi_compatible = kaldi_compatible
        self.dither = dither
        #: samples the first frame reaches before the waveform (reflected), Kaldi mode only
        self.start_padding = self.win_length // 2 - self.hop_length // 2 if kaldi_compatible else 0
        self.mel = None
        if not kaldi_compatible:
            self.mel = torchaudio.transforms.MelSpectrogram(
                sample_rate=sample_rate,
                n_fft=self.win_length,
                win_length=self.win_length,
                hop_length=self.hop_length,
                n_mels=num_mel_bins,
                center=False,
                power=2.0,
            )
        self.register_buffer("cmvn_mean", torch.zeros(num_mel_bins))
        self.register_buffer("cmvn_istd", torch.ones(num_mel_bins))
        if cmvn_stats is not None:
            self.load_cmvn(Path(cmvn_stats))
        self.spec_augment = SpecAugment(**spec_augment) if spec_augment is not None else None

    def load_cmvn(self, path: Path) -> None:
        """Read ``{"mean": [...], "istd": [...]}`` into the CMVN buffers."""
        try:
            stats = json.loads(path.read_text())
            mean = torch.tensor(stats["mean"], dtype=torch.float32)
            istd = torch.tensor(stats["istd"], dtype=torch.float32)
        except (OSError, ValueError, KeyError) as error:
            raise ConfigError(f"frontend.cmvn_stats: cannot read {path}: {error}") from error
        if mean.shape != self.cmvn_mean.shape or istd.shape != self.cmvn_istd.shape:
            raise ConfigError(
                f"frontend.cmvn_stats: {path} has {mean.numel()} dims, the frontend {self.output_dim}"
            )
        self.cmvn_mean.copy_(mean)
        self.cmvn_istd.copy_(istd)

    def num_frames(self, num_samples: Tensor) -> Tensor:
        if self.kaldi_compatible:  # a frame centred on every hop, edges reflected; none under a window
            frames = (num_samples + self.hop_length // 2) // self.hop_length
            return torch.where(num_samples >= self.win_length, frames, torch.zeros_like(frames))
        return ((num_samples - self.win_length) // self.hop_length + 1).clamp(min=0)

    def log_mel(self, waveforms: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Raw log-mel features before CMVN. Args: (B, S), (B,). Returns (B, T, F), (B,)."""
        if self.kaldi_compatible:
            return self._kaldi_log_mel(waveforms, lengths), self.num_frames(lengths)
        if waveforms.size(1) < self.win_length:
            waveforms = torch.nn.functional.pad(waveforms, (0, self.win_length - waveforms.size(1)))
        with torch.autocast(waveforms.device.type, enabled=False):
            power = self.mel(waveforms.float())  # (B, F, T)
        feats = torch.log(power.clamp(min=1e-10)).transpose(1, 2)  # (B, T, F)
        return feats, self.num_frames(lengths)

    def _kaldi_log_mel(self, waveforms: Tensor, lengths: Tensor) -> Tensor:
        """Kaldi filterbanks of each utterance's valid samples (the reflected last frame
        depends on where the utterance ends). Args: (B, S), (B,). Returns (B, T, F), zero
        beyond each utterance's frames."""
        lengths = lengths.tolist()
        feats = [self._kaldi_fbank(wave[:length], snip_edges=False) for wave, length in zip(waveforms, lengths)]
        return torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)

    def _kaldi_fbank(self, wave: Tensor, snip_edges: bool) -> Tensor:
        """Args: wave (S,) in [-1, 1]. Returns (T, F) log-mel energies; no frame for a
        waveform shorter than one window (Kaldi would reflect it several times over)."""
        if wave.numel() < self.win_length:
            return wave.new_zeros(0, self.output_dim, dtype=torch.float32)
        with torch.autocast(wave.device.type, enabled=False):
            return torchaudio.compliance.kaldi.fbank(
                wave.float().unsqueeze(0) * KALDI_SAMPLE_SCALE,
                num_mel_bins=self.output_dim,
                frame_length=self.frame_length_ms,
                frame_shift=self.frame_shift_ms,
                sample_frequency=float(self.sample_rate),
                dither=self.dither if self.training else 0.0,
                **{**KALDI_FBANK, "snip_edges": snip_edges},
            )

    def window_features(self, segment: Tensor) -> Tensor:
        """Features of every whole window in a piece of a stream, as the utterance's own
        frames at those positions (in Kaldi mode the stream's start carries the reflected
        :attr:`start_padding` samples). Args: segment (S,). Returns (T, F) after CMVN, one
        frame per ``hop_length`` samples whose window fits in ``segment``."""
        if self.kaldi_compatible:
            feats = self._kaldi_fbank(segment, snip_edges=True)
        else:
            feats = self.log_mel(segment.unsqueeze(0), torch.tensor([segment.numel()]))[0][0]
        return (feats - self.cmvn_mean) * self.cmvn_istd

    def forward(self, waveforms: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Args: waveforms (B, S) in [-1, 1] at ``sample_rate``; lengths (B,).
        Returns: feats (B, T, F), lengths (B,)."""
        feats, feat_lens = self.log_mel(waveforms, lengths)
        feats = (feats - self.cmvn_mean) * self.cmvn_istd
        if self.spec_augment is not None:
            feats = self.spec_augment(feats, feat_lens)
        return feats, feat_lens
