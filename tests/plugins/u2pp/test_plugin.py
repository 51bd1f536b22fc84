"""The u2pp plugin loads through its entry point like any third-party plugin, and the
recipe's U2++ configs build the models they describe."""
from __future__ import annotations

from pathlib import Path

import pytest

from speechforge.builder import build_model
from speechforge.config import load_config
from speechforge.plugins import create_host
from speechforge_plugins.u2pp.bi_transformer_decoder import BiTransformerDecoder

CONF = Path(__file__).resolve().parents[3] / "egs" / "librispeech" / "conf"
METHODS = ["ctc_greedy_search", "ctc_prefix_beam_search", "attention", "attention_rescoring"]


def test_components_are_registered_by_the_plugin():
    host = create_host()
    owners = {(c.kind, c.name): c.owner for c in host.registry.components()}
    for key in [("decoder", "transformer"), ("decoder", "bitransformer"), ("loss", "attention"), ("search", "attention"), ("search", "attention_rescoring")]:
        assert owners[key] == "u2pp", key


@pytest.mark.parametrize(
    "name,params,ctc_weight,decoder_blocks",
    [("u2pp_conformer", (40e6, 60e6), 0.3, 3), ("u2pp_conformer_small", (3e6, 8e6), 0.7, 1)],
)
def test_recipe_configs_build(name, params, ctc_weight, decoder_blocks):
    config = load_config(CONF / f"{name}.yaml")
    model = build_model({**config, "vocab_size": 256})
    assert isinstance(model.decoder, BiTransformerDecoder)
    assert len(model.decoder.left_decoder.decoders) == len(model.decoder.right_decoder.decoders) == decoder_blocks
    assert model.encoder.use_dynamic_chunk and all(b.conv_module.causal for b in model.encoder.blocks)
    assert model.loss_weights == pytest.approx({"ctc": ctc_weight, "attention": 1 - ctc_weight})
    assert model.losses["attention"].reverse_weight == 0.3
    assert config["decode"]["methods"] == METHODS and config["decode"]["chunk_sizes"] == [-1, 16]
    assert params[0] < sum(p.numel() for p in model.parameters()) < params[1]
