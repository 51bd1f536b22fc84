"""``chunk_size`` has one meaning in the decoding commands: -1 full context, 0 the encoder's
configured chunk (a static chunk here), N chunks of N frames; other values are refused."""
from __future__ import annotations

from pathlib import Path

import torch

from speechforge.builder import build_model
from speechforge.cli import main
from speechforge.config import save_config
from speechforge.data.audio import load_audio
from speechforge.data.data_dir import read_data_dir, read_table
from speechforge.decode.recognizer import Recognizer
from speechforge.text.char_tokenizer import CharTokenizer
from speechforge.train.checkpoint import save_checkpoint

STATIC = 4


def static_chunk_experiment(root: Path, data: Path) -> Path:
    """A causal CTC Conformer with ``static_chunk_size: 4`` and random weights."""
    exp = root / "exp"
    tokenizer = CharTokenizer.train([u.text for u in read_data_dir(data)])
    tokenizer.save(exp / "tokenizer")
    config = {
        "vocab_size": tokenizer.vocab_size,
        "frontend": {"type": "fbank", "num_mel_bins": 20},
        "encoder": {
            "type": "conformer", "d_model": 16, "heads": 2, "num_blocks": 2, "causal": True, "static_chunk_size": STATIC,
            "ffn": {"type": "dense", "hidden": 24}, "encoder_block": {"type": "conformer", "conv_kernel": 5, "conv_norm": "layer_norm"},
        },
        "losses": [{"type": "ctc"}],
        "decode": {"methods": ["ctc_greedy_search"]},
    }  # fmt: skip
    save_config(config, exp / "config.yaml")
    save_checkpoint({"model": build_model(config).state_dict()}, exp / "model_avg.pt")
    return exp


def test_decode_chunk_zero_is_the_static_chunk_and_bad_sizes_are_refused(tmp_path, tiny_data_dir, capsys):
    exp = static_chunk_experiment(tmp_path, tiny_data_dir)
    assert main(["decode", "--exp-dir", str(exp), "--data", str(tiny_data_dir), "--chunk-size", "0"]) == 0
    out_dir = exp / "decode" / tiny_data_dir.name
    assert [p.name for p in out_dir.iterdir()] == [f"ctc_greedy_search@chunk{STATIC}"]  # labelled by the chunk it used
    recognizer = Recognizer(exp)
    utterance = read_data_dir(tiny_data_dir)[0]
    wave = load_audio(utterance.audio, recognizer.sample_rate)
    chunked = recognizer.decode_batch(wave.unsqueeze(0), torch.tensor([wave.numel()]), "ctc_greedy_search", STATIC)[0]
    hyps = read_table(out_dir / f"ctc_greedy_search@chunk{STATIC}" / "hyp", allow_empty_values=True)
    assert hyps[utterance.utt_id] == chunked
    assert main(["decode", "--exp-dir", str(exp), "--data", str(tiny_data_dir), "--chunk-size", "-2"]) == 2
    assert "--chunk-size: must be -1 (full context), 0 (the encoder's own setting) or N > 0 (chunks of N frames), got -2" in capsys.readouterr().err


def test_stream_chunk_zero_streams_with_the_static_chunk(tmp_path, tiny_data_dir, capsys):
    exp = static_chunk_experiment(tmp_path, tiny_data_dir)
    audio = read_data_dir(tiny_data_dir)[0].audio
    assert main(["stream", "--exp-dir", str(exp), audio, "--chunk-size", "0"]) == 0
    own = capsys.readouterr().out
    assert main(["stream", "--exp-dir", str(exp), audio, "--chunk-size", str(STATIC)]) == 0
    explicit = capsys.readouterr().out
    assert own.splitlines()[-1] == explicit.splitlines()[-1] and len(own.splitlines()) == len(explicit.splitlines())
