"""The plugin loads through its entry point and builds ``flash`` from config."""
from __future__ import annotations

import pytest

from speechforge.errors import ConfigError
from speechforge.plugins import create_host
from speechforge_plugins.flash_attention.flash_attention import FlashAttention
from speechforge_plugins.flash_attention.rel_position_flash_attention import RelPositionFlashAttention


def test_flash_is_registered_by_the_plugin() -> None:
    host = create_host()
    assert host.plugin("flash_attention").components == {"attention": ["flash"]}
    assert host.registry.get("attention", "flash").owner == "flash_attention"


@pytest.mark.parametrize(("relative", "cls"), [(False, FlashAttention), (True, RelPositionFlashAttention)])
def test_relative_option_picks_the_variant(relative: bool, cls: type) -> None:
    registry = create_host().registry
    attention = registry.build("attention", {"type": "flash", "relative": relative}, "attention", d_model=16, heads=2)
    assert type(attention) is cls
    assert attention.uses_relative_position is relative


def test_unknown_key_names_its_path() -> None:
    registry = create_host().registry
    with pytest.raises(ConfigError, match="encoder.attention.query_blocks: unknown key .* did you mean query_block"):
        registry.build("attention", {"type": "flash", "query_blocks": 4}, "encoder.attention", d_model=16, heads=2)
