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


class FbankFrontend(Frontend):
    """25 ms Hann windows every 10 ms, ``num_mel_bins`` log-mel energies (no frame padding at
    the edges, like Kaldi's ``snip_edges``), then ``(x - mean) * istd`` and SpecAugment.

    Keys: ``sample_rate``, ``num_mel_bins``, ``frame_length_ms``, ``frame_shift_ms``,
    ``cmvn_stats`` (a JSON file written by ``speechforge cmvn``), ``spec_augment`` (a mapping
    of :class:`SpecAugment` arguments, or null to disable).
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
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.output_dim = num_mel_bins
        self.win_length = int(sample_rate * frame_length_ms / 1000)
        self.hop_length = int(sample_rate * frame_shift_ms / 1000)
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
        return ((num_samples - self.win_length) // self.hop_length + 1).clamp(min=0)

    def log_mel(self, waveforms: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Raw log-mel features before CMVN. Args: (B, S), (B,). Returns (B, T, F), (B,)."""
        if waveforms.size(1) < self.win_length:
            waveforms = torch.nn.functional.pad(waveforms, (0, self.win_length - waveforms.size(1)))
        with torch.autocast(waveforms.device.type, enabled=False):
            power = self.mel(waveforms.float())  # (B, F, T)
        feats = torch.log(power.clamp(min=1e-10)).transpose(1, 2)  # (B, T, F)
        return feats, self.num_frames(lengths)

    def forward(self, waveforms: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Args: waveforms (B, S) in [-1, 1] at ``sample_rate``; lengths (B,).
        Returns: feats (B, T, F), lengths (B,)."""
        feats, feat_lens = self.log_mel(waveforms, lengths)
        feats = (feats - self.cmvn_mean) * self.cmvn_istd
        if self.spec_augment is not None:
            feats = self.spec_augment(feats, feat_lens)
        return feats, feat_lens
