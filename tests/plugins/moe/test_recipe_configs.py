"""The recipe's MoE configs are their dense U2++ configs with every FFN made a MoE layer."""
from __future__ import annotations

from pathlib import Path

import pytest

from speechforge.builder import build_model
from speechforge.config import load_config
from speechforge_plugins.moe.moe_feed_forward import MoEFeedForward

CONF = Path(__file__).resolve().parents[3] / "egs" / "librispeech" / "conf"


def _without_ffn(config: dict) -> dict:
    return {
        key: ({k: v for k, v in value.items() if k != "ffn"} if isinstance(value, dict) else value)
        for key, value in config.items()
    }


@pytest.mark.parametrize(
    "dense,min_ratio", [("u2pp_conformer_small", 4.0), pytest.param("u2pp_conformer", 4.7, marks=pytest.mark.slow)]
)
def test_moe_config_changes_only_the_ffns(dense, min_ratio):
    dense_config = load_config(CONF / f"{dense}.yaml")
    moe_config = load_config(CONF / f"{dense.replace('u2pp_conformer', 'u2pp_conformer_moe')}.yaml")
    assert _without_ffn(moe_config) == _without_ffn(dense_config)
    for section in ("encoder", "decoder"):
        moe_ffn, dense_ffn = dict(moe_config[section]["ffn"]), dict(dense_config[section]["ffn"])
        assert moe_ffn.pop("type") == "moe" and dense_ffn.pop("type") == "dense"
        assert moe_ffn.pop("num_experts") == 8 and moe_ffn.pop("top_k") == 2
        assert moe_ffn == dense_ffn  # each expert is the dense FFN's size
    dense_model = build_model({**dense_config, "vocab_size": 64})
    moe_model = build_model({**moe_config, "vocab_size": 64})
    ffns = [m for m in moe_model.modules() if isinstance(m, MoEFeedForward)]
    decoder_blocks = dense_config["decoder"]["num_blocks"] + dense_config["decoder"]["r_num_blocks"]
    assert len(ffns) == 2 * dense_config["encoder"]["num_blocks"] + decoder_blocks  # macaron pairs + decoder
    ratio = sum(p.numel() for p in moe_model.parameters()) / sum(p.numel() for p in dense_model.parameters())
    assert ratio >= min_ratio
