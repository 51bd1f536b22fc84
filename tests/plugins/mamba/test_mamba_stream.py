"""Mamba blocks stream like Conformer blocks: the streaming decoder and ``speechforge stream``
carry each block's conv and scan state across chunks, and the streamed encodings equal the
full causal forward."""
from __future__ import annotations

import pytest
import torch

from speechforge.builder import build_model
from speechforge.cli import main
from speechforge.config import save_config
from speechforge.data.audio import load_audio
from speechforge.data.data_dir import read_data_dir
from speechforge.decode.ctc_greedy_search import CTCGreedySearch
from speechforge.decode.recognizer import Recognizer
from speechforge.decode.streaming_decoder import StreamingDecoder
from speechforge.errors import ConfigError
from speechforge.text.char_tokenizer import CharTokenizer
from speechforge.train.checkpoint import save_checkpoint


def config(vocab_size: int = 10, bidirectional: bool = False) -> dict:
    return {
        "vocab_size": vocab_size,
        "frontend": {"type": "fbank", "num_mel_bins": 20},
        "encoder": {
            "type": "conformer", "d_model": 16, "heads": 2, "num_blocks": 2, "causal": not bidirectional, "pos_enc": "none",
            "ffn": {"type": "dense", "hidden": 24},
            "encoder_block": {"type": "mamba", "use_ffn": True, "bidirectional": bidirectional, "chunk_size": 4},
        },
        "losses": [{"type": "ctc"}],
    }  # fmt: skip


@pytest.mark.parametrize("chunk,piece", [(1, 999), (4, 1600), (8, 16000)])
def test_streamed_mamba_encoder_equals_the_full_causal_forward(chunk, piece):
    asr = build_model(config()).eval()
    wave = torch.randn(9003) * 0.1
    with torch.no_grad():
        full, _ = asr.encode(wave.unsqueeze(0), torch.tensor([wave.numel()]), -1)  # full context: the causal scan
        offline = CTCGreedySearch()(asr, full, torch.tensor([full.size(1)]))[0]
    stream = StreamingDecoder(asr, CTCGreedySearch(), chunk)
    for start in range(0, wave.numel(), piece):
        stream.accept_waveform(wave[start : start + piece])
    streamed = stream.finish()
    assert streamed.shape == full.shape
    assert (streamed - full).abs().max() <= 1e-4
    assert stream.final() == offline
    assert all(set(state) == {"conv", "ssm"} for state in stream.encoder_state.blocks)


def test_bidirectional_mamba_cannot_stream():
    stream = StreamingDecoder(build_model(config(bidirectional=True)).eval(), CTCGreedySearch(), 4)
    with pytest.raises(ConfigError, match=r"encoder: blocks\.0 is bidirectional .*streaming needs bidirectional: false"):
        stream.accept_waveform(torch.randn(8000))


def test_speechforge_stream_runs_a_mamba_experiment(tmp_path, tiny_data_dir, capsys):
    exp = tmp_path / "exp"
    tokenizer = CharTokenizer.train([u.text for u in read_data_dir(tiny_data_dir)])
    tokenizer.save(exp / "tokenizer")
    model_config = config(tokenizer.vocab_size)
    save_config(model_config, exp / "config.yaml")
    save_checkpoint({"model": build_model(model_config).state_dict()}, exp / "model_avg.pt")
    audio = read_data_dir(tiny_data_dir)[0].audio
    assert main(["stream", "--exp-dir", str(exp), audio, "--chunk-size", "8", "--method", "ctc_prefix_beam_search"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) >= 3 and all(line.startswith("partial ") for line in lines[:-1])
    recognizer = Recognizer(exp)
    wave = load_audio(audio, recognizer.sample_rate)
    expected = recognizer.decode_batch(wave.unsqueeze(0), torch.tensor([wave.numel()]), "ctc_prefix_beam_search", -1)[0]
    assert lines[-1] == f"final (ctc_prefix_beam_search): {expected}".rstrip()
