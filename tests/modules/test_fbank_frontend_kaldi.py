"""The fbank frontend's Kaldi-compatible mode: Kaldi's fbank on int16-scaled samples with the
settings sherpa-onnx uses, per utterance whatever the batch padding, dithering only in training,
and streamed piece by piece equal to the whole utterance's features."""
from __future__ import annotations

import pytest
import torch
import torchaudio

from speechforge.builder import build_model
from speechforge.decode.ctc_prefix_beam_search import ctc_prefix_beam_search
from speechforge.decode.streaming_decoder import StreamingDecoder
from speechforge.errors import ConfigError
from speechforge.modules.fbank_frontend import FbankFrontend


def test_features_are_kaldi_fbank_of_int16_scaled_samples():
    frontend = FbankFrontend(num_mel_bins=23, kaldi_compatible=True).eval()
    wave = torch.randn(8123) * 0.1
    feats, lens = frontend.log_mel(wave.unsqueeze(0), torch.tensor([8123]))
    want = torchaudio.compliance.kaldi.fbank(
        (wave * 32768).unsqueeze(0), num_mel_bins=23, window_type="povey", snip_edges=False,
        low_freq=20.0, high_freq=-400.0, dither=0.0,
    )  # fmt: skip
    assert int(lens) == want.size(0) == (8123 + 80) // 160
    assert torch.allclose(feats[0], want, atol=1e-4)


def test_each_utterance_is_its_own_whatever_the_padding():
    frontend = FbankFrontend(num_mel_bins=20, kaldi_compatible=True).eval()
    waves = torch.randn(3, 6000) * 0.1
    lengths = torch.tensor([6000, 4321, 3999])
    batch, batch_lens = frontend(waves, lengths)
    for wave, n, feats, frames in zip(waves, lengths, batch, batch_lens):
        alone, alone_lens = frontend(wave[:n].unsqueeze(0), n.view(1))
        assert int(frames) == int(alone_lens) == alone.size(1)
        assert torch.equal(feats[:frames], alone[0])


def test_dither_only_in_training_and_only_in_kaldi_mode():
    frontend = FbankFrontend(num_mel_bins=20, kaldi_compatible=True, dither=1.0)
    wave, lens = torch.randn(1, 4000) * 0.1, torch.tensor([4000])
    frontend.eval()
    assert torch.equal(frontend(wave, lens)[0], frontend(wave, lens)[0])
    frontend.train()
    assert not torch.equal(frontend(wave, lens)[0], frontend(wave, lens)[0])
    with pytest.raises(ConfigError, match="^frontend.dither: only the Kaldi-compatible mode dithers"):
        FbankFrontend(dither=1.0)


@pytest.mark.parametrize("piece", [100, 1234, 16000])
def test_a_stream_sees_the_whole_utterance_features(piece):
    config = {
        "vocab_size": 10,
        "frontend": {"type": "fbank", "num_mel_bins": 20, "kaldi_compatible": True},
        "encoder": {
            "type": "conformer", "d_model": 16, "heads": 2, "num_blocks": 1, "causal": True,
            "ffn": {"type": "dense", "hidden": 24}, "encoder_block": {"type": "conformer", "conv_kernel": 5, "conv_norm": "layer_norm"},
        },
        "losses": [{"type": "ctc"}],
    }  # fmt: skip
    model = build_model(config).eval()
    wave = torch.randn(9000) * 0.1
    with torch.no_grad():
        full, _ = model.encode(wave.unsqueeze(0), torch.tensor([9000]), 4)
    stream = StreamingDecoder(model, ctc_prefix_beam_search(), 4)
    for start in range(0, wave.numel(), piece):
        stream.accept_waveform(wave[start : start + piece])
    streamed = stream.finish()
    # the last feature frames reach past the end (reflected): only a whole utterance has them
    assert full.size(1) - 1 <= streamed.size(1) <= full.size(1)
    kept = streamed.size(1) - 2
    assert (streamed[:, :kept] - full[:, :kept]).abs().max() <= 1e-4
