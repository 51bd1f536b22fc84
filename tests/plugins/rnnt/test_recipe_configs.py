"""The recipe's transducer configs: the paper-shaped usm_rnnt builds on the meta device with
893M parameters (within 2 %, training-only projections aside), the small ones build with
64-multiple dimensions, the streaming one is causal with dynamic chunks, the stateless one is
usm_rnnt_small with what sherpa-onnx needs."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from speechforge.builder import build_model
from speechforge.commands.config import parameter_table
from speechforge.config import load_config
from speechforge.modules.local_multi_head_attention import LocalMultiHeadAttention
from speechforge_plugins.rnnt.transducer_decoder import TransducerDecoder

CONF = Path(__file__).resolve().parents[3] / "egs" / "librispeech" / "conf"
TRAINING_ONLY = ("decoder.simple_am_proj", "decoder.simple_lm_proj")


@pytest.fixture
def build_on_meta(monkeypatch):
    """``build(config)``: the model's parameters on the meta device (no memory); the fbank
    frontend, which has none and checks its filterbank's values, is built on the CPU."""
    from speechforge.modules.fbank_frontend import FbankFrontend

    frontend_init = FbankFrontend.__init__

    def on_cpu(self, **kwargs):
        with torch.device("cpu"):
            frontend_init(self, **kwargs)

    monkeypatch.setattr(FbankFrontend, "__init__", on_cpu)

    def build(config):
        with torch.device("meta"):
            return build_model(config)

    return build


def test_usm_rnnt_is_the_papers_shape_with_893m_parameters(build_on_meta):
    config = load_config(CONF / "usm_rnnt.yaml")
    model = build_on_meta({**config, "vocab_size": config["tokenizer"]["vocab_size"]})
    rows = dict(parameter_table(model, depth=2))
    inference = rows["total"] - sum(rows[name] for name in TRAINING_ONLY)
    assert abs(inference - 893e6) / 893e6 < 0.02, inference
    assert model.ctc is None and isinstance(model.decoder, TransducerDecoder)
    assert len(model.encoder.blocks) == 16 and model.encoder.output_dim == 1536
    attention = model.encoder.blocks[0].self_attn
    assert isinstance(attention, LocalMultiHeadAttention) and (attention.left, attention.right, attention.heads) == (129, 128, 12)
    assert model.decoder.predictor.lstm.num_layers == 3 and model.decoder.joiner.dim == 640
    assert config["optim"]["type"] == "adafactor"


@pytest.mark.parametrize("name,streaming", [("usm_rnnt_small", False), ("usm_rnnt_small_streaming", True), ("usm_rnnt_small_stateless", False)])
def test_small_configs_build_with_64_multiples(name, streaming, build_on_meta):
    config = load_config(CONF / f"{name}.yaml")
    model = build_on_meta({**config, "vocab_size": 32})
    for module_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not module_name.endswith(("output", "simple_am_proj", "simple_lm_proj")):
            assert module.in_features % 64 == 0, (module_name, module.in_features)
    assert model.encoder.use_dynamic_chunk is streaming
    assert all(b.conv_module.causal for b in model.encoder.blocks) is streaming
    assert config["decode"]["methods"][0] == "transducer_modified_beam_search"


def test_the_stateless_config_is_usm_rnnt_small_made_for_sherpa_onnx():
    from speechforge.errors import ConfigError
    from speechforge_plugins.rnnt.transducer_onnx_exporter import TransducerOnnxExporter

    small, stateless = (load_config(CONF / f"{name}.yaml") for name in ("usm_rnnt_small", "usm_rnnt_small_stateless"))
    assert stateless["decoder"].pop("predictor") == {"type": "stateless", "dim": 256, "context_size": 2}
    assert stateless["frontend"].pop("kaldi_compatible") is True
    assert stateless["decode"].pop("options") == {"transducer_greedy_search": {"max_symbols": 1}}  # as sherpa-onnx
    small["decoder"].pop("predictor")
    assert stateless == small  # nothing else changed
    TransducerOnnxExporter().check(build_model({**load_config(CONF / "usm_rnnt_small_stateless.yaml"), "vocab_size": 32}))
    lstm = load_config(CONF / "usm_rnnt_small.yaml", ["frontend.kaldi_compatible=true"])
    with pytest.raises(ConfigError, match="^decoder.predictor: sherpa-onnx's transducer decoder"):
        TransducerOnnxExporter().check(build_model({**lstm, "vocab_size": 32}))
