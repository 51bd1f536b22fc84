"""The plugin loads through its entry point and builds ``mamba`` blocks from config."""
from __future__ import annotations

import pytest

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


def test_unknown_key_names_its_path() -> None:
    registry = create_host().registry
    with pytest.raises(ConfigError, match=r"encoder.encoder_block.d_stat: unknown key .* did you mean d_state"):
        registry.build(
            "encoder", {"type": "conformer", "encoder_block": {"type": "mamba", "d_stat": 8}}, "encoder", input_dim=20
        )
