"""Frontend: batched features equal per-utterance ones, frame counts follow Kaldi's
snip_edges convention (as torchaudio's Kaldi fbank), CMVN, SpecAugment."""
from __future__ import annotations

import json

import pytest
import torch
import torchaudio

from speechforge.errors import ConfigError
from speechforge.modules.fbank_frontend import FbankFrontend
from speechforge.modules.spec_augment import SpecAugment


def test_batched_equals_single_utterances():
    frontend = FbankFrontend().eval()
    waves = [torch.randn(16000) * 0.1, torch.randn(9000) * 0.1]
    batch = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    feats, lens = frontend(batch, torch.tensor([16000, 9000]))
    for i, wave in enumerate(waves):
        single, single_len = frontend(wave.unsqueeze(0), torch.tensor([wave.numel()]))
        assert lens[i] == single_len[0] == single.size(1)
        torch.testing.assert_close(feats[i, : lens[i]], single[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("samples", [400, 401, 16000, 12345])
def test_frame_count_matches_torchaudio_kaldi_fbank(samples):
    wave = torch.randn(1, samples) * 0.1
    kaldi = torchaudio.compliance.kaldi.fbank(wave, num_mel_bins=80, snip_edges=True)
    feats, lens = FbankFrontend()(wave, torch.tensor([samples]))
    assert feats.size(1) == lens[0] == kaldi.size(0)


def test_log_mel_tracks_kaldi_fbank_energy():
    """Same mel scale and windows: per-frame energies correlate strongly with Kaldi's."""
    t = torch.arange(16000) / 16000
    wave = (torch.sin(2 * torch.pi * 440 * t) * torch.linspace(0, 1, 16000)).unsqueeze(0) * 0.5
    kaldi = torchaudio.compliance.kaldi.fbank(wave * 32768, num_mel_bins=80, dither=0.0)
    ours, _ = FbankFrontend().log_mel(wave, torch.tensor([16000]))
    a, b = ours[0].mean(1), kaldi.mean(1)
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.95


def test_cmvn_stats_are_applied(tmp_path):
    path = tmp_path / "cmvn.json"
    path.write_text(json.dumps({"mean": [1.0] * 80, "istd": [2.0] * 80}))
    plain, with_cmvn = FbankFrontend(), FbankFrontend(cmvn_stats=str(path))
    wave = torch.randn(1, 8000)
    a, _ = plain(wave, torch.tensor([8000]))
    b, _ = with_cmvn(wave, torch.tensor([8000]))
    torch.testing.assert_close(b, (a - 1.0) * 2.0)


def test_bad_cmvn_file_is_named(tmp_path):
    bad = tmp_path / "cmvn.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="frontend.cmvn_stats: cannot read .*cmvn.json"):
        FbankFrontend(cmvn_stats=str(bad))
    bad.write_text(json.dumps({"mean": [0.0] * 40, "istd": [1.0] * 40}))
    with pytest.raises(ConfigError, match="has 40 dims, the frontend 80"):
        FbankFrontend(cmvn_stats=str(bad))


def test_spec_augment_masks_only_in_training_and_inside_lengths():
    aug = SpecAugment(num_freq_masks=2, max_freq_width=8, num_time_masks=3, max_time_width=10)
    feats = torch.randn(4, 100, 40) + 10.0
    lens = torch.tensor([100, 50, 30, 10])
    aug.eval()
    assert torch.equal(aug(feats, lens), feats)
    aug.train()
    out = aug(feats, lens)
    masked = out == 0
    assert masked.any()
    time_masked = masked.all(dim=2)  # whole frames zeroed
    for i, length in enumerate(lens.tolist()):
        assert not time_masked[i, length:].any()
    freq_masked = masked.all(dim=1)
    assert (freq_masked.sum(dim=1) <= 2 * 8).all()


def test_time_warp_keeps_shape_and_padding():
    aug = SpecAugment(num_freq_masks=0, num_time_masks=0, time_warp=5).train()
    feats = torch.randn(2, 60, 10)
    out = aug(feats, torch.tensor([60, 40]))
    assert out.shape == feats.shape
    assert torch.equal(out[1, 40:], feats[1, 40:])
