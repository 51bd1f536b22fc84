"""``speechforge export --format onnx`` refuses a model sherpa-onnx cannot run in one line,
before it writes anything; ``--int8`` belongs to the ONNX format."""
from __future__ import annotations

from speechforge.cli import main


def test_a_model_without_kaldi_features_is_refused_before_any_file(untrained_experiment, tiny_config, capsys):
    exp = untrained_experiment(tiny_config, {"methods": ["ctc_greedy_search"]})
    assert main(["export", "--exp-dir", str(exp), "--format", "onnx"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("speechforge export: error: frontend.kaldi_compatible: sherpa-onnx computes Kaldi filterbanks")
    assert "\n" not in error
    assert not (exp / "export").exists()


def test_int8_needs_the_onnx_format(untrained_experiment, tiny_config, capsys):
    exp = untrained_experiment(tiny_config, {"methods": ["ctc_greedy_search"]})
    assert main(["export", "--exp-dir", str(exp), "--int8"]) == 2
    assert "--int8: quantizes the ONNX graphs; give --format onnx" in capsys.readouterr().err
