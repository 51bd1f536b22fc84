"""The plugin loads through its entry point and builds ``mamba`` blocks from config."""
from __future__ import annotations

import pytest

from pathlib import Path

import torch

from speechforge.builder import build_model
from speechforge.config import load_config
from speechforge.errors import ConfigError
from speechforge.plugins import create_host
from speechforge_plugins.mamba.mamba_block import MambaBlock


def test_mamba_block_is_registered_by_the_plugin() -> None:
    host = create_host()
    assert host.plugin("mamba").components == {"encoder_block": ["mamba"]}
    assert host.registry.get("encoder_block", "mamba").owner == "mamba"


def test_encoder_config_builds_mamba_blocks() -> None:
    registry = create_host().registry
    encoder = registry.build(
        "encoder",
        {"type": "conformer", "d_model": 32, "heads": 4, "num_blocks": 2, "pos_enc": "none",
         "encoder_block": {"type": "mamba", "bidirectional": True, "d_state": 8}},
        "encoder",
        input_dim=20,
    )
    assert [type(b) for b in encoder.blocks] == [MambaBlock, MambaBlock]
    assert encoder.blocks[0].mamba.A_log.shape == (64, 8)


def test_recipe_config_builds_a_mamba_ctc_model() -> None:
    config = load_config(Path(__file__).parents[3] / "egs/librispeech/conf/ctc_mamba_small.yaml")
    model = build_model({**config, "vocab_size": 32})
    assert len(model.encoder.blocks) == 6 and all(isinstance(b, MambaBlock) for b in model.encoder.blocks)
    assert all(b.mamba_backward is not None and b.feed_forward is not None for b in model.encoder.blocks)
    out, lens = model.encode(torch.randn(2, 8000), torch.tensor([8000, 5000]))
    assert out.shape[-1] == 144 and lens.tolist()[0] > lens.tolist()[1]


def test_unknown_key_names_its_path() -> None:
    registry = create_host().registry
    with pytest.raises(ConfigError, match=r"encoder.encoder_block.d_stat: unknown key .* did you mean d_state"):
        registry.build(
            "encoder", {"type": "conformer", "encoder_block": {"type": "mamba", "d_stat": 8}}, "encoder", input_dim=20
        )
