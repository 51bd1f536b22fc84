"""``speechforge stream`` and ``speechforge decode`` on U2++ experiments: partial results after
every chunk and a rescored final result; all four methods at full context and chunked."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from speechforge.builder import build_model
from speechforge.cli import main
from speechforge.config import save_config
from speechforge.data.audio import load_audio
from speechforge.data.data_dir import read_data_dir
from speechforge.decode.recognizer import Recognizer
from speechforge.text.char_tokenizer import CharTokenizer
from speechforge.train.checkpoint import save_checkpoint

MODEL = {
    "frontend": {"type": "fbank", "num_mel_bins": 40},
    "encoder": {
        "type": "conformer", "d_model": 32, "heads": 4, "num_blocks": 2, "causal": True, "use_dynamic_chunk": True,
        "ffn": {"type": "dense", "hidden": 64}, "encoder_block": {"type": "conformer", "conv_kernel": 5, "conv_norm": "layer_norm"},
    },
    "decoder": {"type": "bitransformer", "heads": 4, "num_blocks": 1, "r_num_blocks": 1, "ffn": {"type": "dense", "hidden": 64}},
    "losses": [{"type": "ctc", "weight": 0.3}, {"type": "attention", "weight": 0.7, "reverse_weight": 0.3}],
}  # fmt: skip
METHODS = ["ctc_greedy_search", "ctc_prefix_beam_search", "attention", "attention_rescoring"]


def untrained_experiment(root: Path, data: Path, with_decoder: bool = True, decode: dict | None = None) -> Path:
    """Tokenizer, config and random weights: enough for the decoding commands."""
    exp = root / "exp"
    tokenizer = CharTokenizer.train([u.text for u in read_data_dir(data)])
    tokenizer.save(exp / "tokenizer")
    config = {**MODEL, "vocab_size": tokenizer.vocab_size, "decode": {"beam_size": 3, **(decode or {})}}
    if not with_decoder:
        config = {k: v for k, v in config.items() if k != "decoder"}
        config["losses"] = [{"type": "ctc"}]
    save_config(config, exp / "config.yaml")
    save_checkpoint({"model": build_model(config).state_dict()}, exp / "model_avg.pt")
    return exp


def test_stream_prints_partials_and_a_rescored_final(tmp_path, tiny_data_dir, capsys):
    exp = untrained_experiment(tmp_path, tiny_data_dir)
    audio = read_data_dir(tiny_data_dir)[0].audio
    assert main(["stream", "--exp-dir", str(exp), audio, "--chunk-size", "4", "--num-left-chunks", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) >= 3 and all(line.startswith("partial ") for line in lines[:-1])
    assert lines[-1].startswith("final (attention_rescoring):")


def test_stream_without_decoder_ends_with_the_ctc_result(tmp_path, tiny_data_dir, capsys):
    exp = untrained_experiment(tmp_path, tiny_data_dir, with_decoder=False)
    audio = read_data_dir(tiny_data_dir)[0].audio
    assert main(["stream", "--exp-dir", str(exp), audio, "--chunk-size", "8", "--method", "ctc_prefix_beam_search"]) == 0
    final = capsys.readouterr().out.strip().splitlines()[-1]
    recognizer = Recognizer(exp)
    wave = load_audio(audio, recognizer.sample_rate)
    expected = recognizer.decode_batch(wave.unsqueeze(0), torch.tensor([wave.numel()]), "ctc_prefix_beam_search", 8, beam_size=3)
    assert final == f"final (ctc_prefix_beam_search): {expected[0]}".rstrip()


def test_stream_refuses_full_context(tmp_path, tiny_data_dir, capsys):
    exp = untrained_experiment(tmp_path, tiny_data_dir)
    audio = read_data_dir(tiny_data_dir)[0].audio
    assert main(["stream", "--exp-dir", str(exp), audio, "--chunk-size", "-1"]) == 2
    assert "--chunk-size: streaming needs a chunk of at least 1 frame, got -1" in capsys.readouterr().err


def test_stream_defaults_to_the_first_streaming_method_of_decode_methods(tmp_path, tiny_data_dir, capsys):
    decode = {"methods": ["attention_rescoring", "ctc_greedy_search", "ctc_prefix_beam_search"]}
    exp = untrained_experiment(tmp_path, tiny_data_dir, with_decoder=False, decode=decode)
    audio = read_data_dir(tiny_data_dir)[0].audio
    assert main(["stream", "--exp-dir", str(exp), audio, "--chunk-size", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    recognizer = Recognizer(exp)
    wave = load_audio(audio, recognizer.sample_rate)
    expected = recognizer.decode_batch(wave.unsqueeze(0), torch.tensor([wave.numel()]), "ctc_greedy_search", 4)
    assert lines[-1] == f"final (ctc_greedy_search): {expected[0]}".rstrip()
    assert lines[-2].endswith(expected[0])  # greedy's last partial is its result


def test_stream_refuses_a_method_that_cannot_stream(tmp_path, tiny_data_dir, capsys):
    exp = untrained_experiment(tmp_path, tiny_data_dir, decode={"methods": ["attention", "attention_rescoring"]})
    audio = read_data_dir(tiny_data_dir)[0].audio
    assert main(["stream", "--exp-dir", str(exp), audio, "--method", "attention"]) == 2
    streaming = "ctc_greedy_search, ctc_prefix_beam_search, ctc_prefix_beam_search_lm"
    assert f"--method: attention cannot stream; streaming methods: {streaming}" in capsys.readouterr().err
    assert main(["stream", "--exp-dir", str(exp), audio]) == 2
    message = f"decode.methods: none of attention, attention_rescoring can stream; pass --method with one of {streaming}"
    assert message in capsys.readouterr().err


def test_stream_chunk_zero_is_the_encoders_own_chunk(tmp_path, tiny_data_dir, capsys):
    exp = untrained_experiment(tmp_path, tiny_data_dir)  # dynamic chunks: no static chunk to decode with
    audio = read_data_dir(tiny_data_dir)[0].audio
    assert main(["stream", "--exp-dir", str(exp), audio, "--chunk-size", "0"]) == 2
    assert "--chunk-size: 0 means the encoder's own chunk" in capsys.readouterr().err


@pytest.mark.slow
def test_trained_u2pp_decodes_with_every_method_and_streams(tmp_path, tiny_data_dir):
    exp = tmp_path / "u2pp"
    CharTokenizer.train([u.text for u in read_data_dir(tiny_data_dir)]).save(exp / "tokenizer")
    conf = tmp_path / "u2pp.yaml"
    runtime = {
        "data": {"train": str(tiny_data_dir), "valid": str(tiny_data_dir), "max_seconds": 6.0, "num_workers": 0},
        "optim": {"lr": 3e-3}, "scheduler": {"type": "constant", "warmup_steps": 2},
        "train": {"max_epochs": 2, "progress_bar": False},
        "decode": {"methods": METHODS, "chunk_sizes": [-1, 4], "beam_size": 3},
    }  # fmt: skip
    conf.write_text(yaml.safe_dump({**MODEL, **runtime}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "speechforge.cli"]
    trained = subprocess.run([*cli, "train", "--config", str(conf), "--exp-dir", str(exp)], capture_output=True, text=True, env=env, timeout=600)
    assert trained.returncode == 0, trained.stderr[-3000:]
    decoded = subprocess.run([*cli, "decode", "--exp-dir", str(exp), "--data", str(tiny_data_dir)], capture_output=True, text=True, env=env, timeout=600)
    assert decoded.returncode == 0, decoded.stderr[-3000:]
    for method in METHODS:
        for label in (method, f"{method}@chunk4"):
            hyp = exp / "decode" / tiny_data_dir.name / label / "hyp"
            assert len(hyp.read_text().splitlines()) == 8, label
    audio = read_data_dir(tiny_data_dir)[0].audio
    streamed = subprocess.run([*cli, "stream", "--exp-dir", str(exp), audio, "--chunk-size", "4"], capture_output=True, text=True, env=env, timeout=600)
    assert streamed.returncode == 0, streamed.stderr[-3000:]
    assert streamed.stdout.strip().splitlines()[-1].startswith("final (attention_rescoring):")


def test_stream_with_the_lm_fused_search_ends_with_lm_rescoring_of_its_nbest(tmp_path, tiny_data_dir, capsys):
    from speechforge.commands.lm import skipped_ids
    from speechforge.decode.recognizer import LM_FILE
    from speechforge.lm.ngram_lm import NgramLM

    exp = untrained_experiment(tmp_path, tiny_data_dir)
    tokenizer = Recognizer(exp).tokenizer
    texts = [u.text for u in read_data_dir(tiny_data_dir)]
    NgramLM.train([tokenizer.encode(t) for t in texts], 3, tokenizer.pieces, skipped_ids(tokenizer.vocab_size)).save_arpa(exp / LM_FILE)
    audio = read_data_dir(tiny_data_dir)[0].audio
    assert main(["stream", "--exp-dir", str(exp), audio, "--chunk-size", "4", "--method", "ctc_prefix_beam_search_lm"]) == 0
    final = capsys.readouterr().out.strip().splitlines()[-1]
    recognizer = Recognizer(exp)
    wave = load_audio(audio, recognizer.sample_rate)
    expected = recognizer.decode_batch(wave.unsqueeze(0), torch.tensor([wave.numel()]), "attention_rescoring_lm", 4)
    assert final == f"final (attention_rescoring_lm): {expected[0]}".rstrip()
