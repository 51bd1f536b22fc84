"""``speechforge export --format onnx`` refuses a model sherpa-onnx cannot run in one line,
before it writes anything; ``--int8`` belongs to the ONNX format; the layout is the one plugin
offers for the model (a transducer's), else WeNet CTC, never two."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from speechforge.cli import main
from speechforge.commands.export import onnx_exporter
from speechforge.deploy.wenet_ctc_export import WenetCtcExporter
from speechforge.errors import ConfigError
from speechforge.plugins import default_host
from speechforge_plugins.rnnt.transducer_onnx_exporter import TransducerOnnxExporter


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


def lstm_transducer(tiny_config):
    return {
        **tiny_config,
        "frontend": {"type": "fbank", "num_mel_bins": 40, "kaldi_compatible": True},
        "decoder": {"type": "transducer", "predictor": {"type": "lstm", "layers": 1, "hidden": 16}, "joiner": {"type": "linear", "dim": 16}},
        "losses": [{"type": "rnnt", "backend": "native"}],
    }


def test_a_transducer_with_an_lstm_predictor_is_refused_in_one_line_before_any_file(untrained_experiment, tiny_config, capsys):
    exp = untrained_experiment(lstm_transducer(tiny_config), {"methods": ["transducer_greedy_search"]})
    assert main(["export", "--exp-dir", str(exp), "--format", "onnx"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == (
        "speechforge export: error: decoder.predictor: sherpa-onnx's transducer decoder reads only the last "
        "context_size tokens and keeps no state between calls, so the LSTMPredictor's state has no place in it; "
        "train with predictor: {type: stateless, context_size: 2} (as egs/librispeech/conf/usm_rnnt_small_stateless.yaml) to export"
    )
    assert not (exp / "export").exists()


def test_the_layout_is_the_plugins_for_a_transducer_else_wenet_ctc(tiny_config):
    from speechforge.builder import build_model

    host = default_host()
    assert isinstance(onnx_exporter(host, build_model(tiny_config)), WenetCtcExporter)
    assert isinstance(onnx_exporter(host, build_model(lstm_transducer(tiny_config))), TransducerOnnxExporter)


def test_two_plugins_offering_a_layout_are_an_error():
    offers = [TransducerOnnxExporter(), WenetCtcExporter()]
    host = SimpleNamespace(hook=SimpleNamespace(onnx_exporter=lambda model: offers))
    with pytest.raises(ConfigError, match=r"^--format onnx: several plugins offer an ONNX layout for this model \(icefall transducer, WeNet CTC\)"):
        onnx_exporter(host, object())
