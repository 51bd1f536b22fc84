"""``stream --help`` says audio is resampled to the model's rate, and it is: an 8 kHz file
streams exactly like the same audio resampled by torchaudio and saved at 16 kHz."""
from __future__ import annotations

import soundfile
import torchaudio

import re

from speechforge.cli import main
from speechforge.data.audio import load_audio
from speechforge.data.data_dir import read_data_dir
from tests.decode.test_chunk_size import static_chunk_experiment


def test_stream_resamples_audio_at_another_rate(tmp_path, tiny_data_dir, capsys):
    exp = static_chunk_experiment(tmp_path, tiny_data_dir)
    wave = load_audio(read_data_dir(tiny_data_dir)[0].audio, 16000)
    narrow = torchaudio.functional.resample(wave, 16000, 8000)
    soundfile.write(tmp_path / "8k.wav", narrow.numpy(), 8000, subtype="FLOAT")
    soundfile.write(tmp_path / "16k.wav", torchaudio.functional.resample(narrow, 8000, 16000).numpy(), 16000, subtype="FLOAT")
    assert main(["stream", "--exp-dir", str(exp), str(tmp_path / "8k.wav"), "--chunk-size", "4"]) == 0
    resampled = without_timings(capsys.readouterr().out)
    assert main(["stream", "--exp-dir", str(exp), str(tmp_path / "16k.wav"), "--chunk-size", "4"]) == 0
    assert resampled == without_timings(capsys.readouterr().out) and resampled


def without_timings(out: str) -> str:
    """The printed results, without the compute times (``( 34.4 ms)``) that vary run to run."""
    return re.sub(r"\(\s*[\d.]+ ms\)", "", out)
