"""``speechforge stream --method transducer_modified_beam_search`` on a chunked transducer
experiment: partial results after every chunk, and a final result equal to decoding the whole
utterance's encodings under the same chunk mask."""
from __future__ import annotations

import pytest

from speechforge.cli import main
from speechforge.data.data_dir import read_data_dir
from speechforge.decode.recognizer import Recognizer

MODEL = {
    "frontend": {"type": "fbank", "num_mel_bins": 40},
    "encoder": {
        "type": "conformer", "d_model": 32, "heads": 4, "num_blocks": 2, "causal": True, "use_dynamic_chunk": True,
        "ffn": {"type": "dense", "hidden": 64}, "encoder_block": {"type": "conformer", "conv_kernel": 5, "conv_norm": "layer_norm"},
    },
    "decoder": {"type": "transducer", "predictor": {"type": "lstm", "layers": 1, "hidden": 32}, "joiner": {"type": "linear", "dim": 32}},
    "losses": [{"type": "rnnt"}],
}  # fmt: skip


@pytest.mark.parametrize("method", ["transducer_greedy_search", "transducer_modified_beam_search"])
def test_stream_final_equals_the_chunked_offline_decode(method, untrained_experiment, tiny_data_dir, capsys):
    exp = untrained_experiment(MODEL, {"methods": [method], "beam_size": 3})
    audio = read_data_dir(tiny_data_dir)[0].audio
    assert main(["stream", "--exp-dir", str(exp), audio, "--chunk-size", "4", "--method", method]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) >= 3 and all(line.startswith("partial ") for line in lines[:-1])
    expected = Recognizer(exp).transcribe(audio, method, chunk_size=4)
    assert lines[-1] == f"final ({method}): {expected}"
