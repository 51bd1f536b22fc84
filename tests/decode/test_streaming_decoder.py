"""The streaming decoder: features computed piece by piece, chunks through ``forward_chunk``
and the frame-by-frame CTC prefix beam search give what the chunk-masked full forward and the
one-shot prefix beam search give, whatever the sizes the audio arrives in; every streaming
search stepped chunk by chunk equals the offline search; methods that cannot stream are told."""
from __future__ import annotations

import pytest
import torch

from speechforge.builder import build_model
from speechforge.decode.ctc_prefix_beam_search import prefix_beam_search
from speechforge.decode.ctc_prefix_beam_search import ctc_prefix_beam_search, extend_prefix_beams
from speechforge.decode.streaming_decoder import StreamingDecoder
from speechforge.errors import ConfigError

V = 10


def model(causal: bool = True):
    config = {
        "vocab_size": V,
        "frontend": {"type": "fbank", "num_mel_bins": 20},
        "encoder": {
            "type": "conformer", "d_model": 16, "heads": 2, "num_blocks": 2, "causal": causal,
            "ffn": {"type": "dense", "hidden": 24}, "encoder_block": {"type": "conformer", "conv_kernel": 5, "conv_norm": "layer_norm"},
        },
        "losses": [{"type": "ctc"}],
    }  # fmt: skip
    return build_model(config).eval()


@pytest.mark.parametrize("chunk,left,piece", [(4, -1, 1600), (2, 1, 777), (8, 0, 16000)])
def test_stream_equals_chunk_masked_full_forward(chunk, left, piece):
    asr = model()
    wave = torch.randn(14003) * 0.1
    with torch.no_grad():
        full, lens = asr.encode(wave.unsqueeze(0), torch.tensor([wave.numel()]), chunk, left)
    stream = StreamingDecoder(asr, ctc_prefix_beam_search(beam_size=4), chunk, left)
    for start in range(0, wave.numel(), piece):
        stream.accept_waveform(wave[start : start + piece])
    streamed = stream.finish()
    assert streamed.shape == full.shape and int(lens) == full.size(1)
    assert (streamed - full).abs().max() <= 1e-4
    with torch.no_grad():
        one_shot = prefix_beam_search(asr.ctc(full)[0], 4)
    assert stream.partial() == list(one_shot[0][0])


def test_prefix_beams_continue_across_calls():
    log_probs = torch.log_softmax(torch.randn(30, V), dim=-1)
    beams = {(): (0.0, float("-inf"))}
    for start in range(0, 30, 7):
        beams = extend_prefix_beams(beams, log_probs[start : start + 7], 5)
    ranked = sorted(beams, key=lambda p: torch.logaddexp(torch.tensor(beams[p][0]), torch.tensor(beams[p][1])), reverse=True)
    assert [tuple(p) for p, _ in prefix_beam_search(log_probs, 5)][:3] == ranked[:3]


def test_reset_starts_a_new_utterance():
    asr = model()
    stream = StreamingDecoder(asr, ctc_prefix_beam_search(), 4)
    wave = torch.randn(8000) * 0.1
    stream.accept_waveform(wave)
    first = stream.finish()
    stream.reset()
    stream.accept_waveform(wave)
    torch.testing.assert_close(stream.finish(), first)


def test_streaming_needs_a_positive_chunk_and_a_causal_encoder():
    with pytest.raises(ConfigError, match="--chunk-size: streaming needs a chunk of at least 1 frame, got -1"):
        StreamingDecoder(model(), ctc_prefix_beam_search(), -1)
    stream = StreamingDecoder(model(causal=False), ctc_prefix_beam_search(), 4)
    with pytest.raises(ConfigError, match="streaming needs causal: true"):
        stream.accept_waveform(torch.randn(8000))
