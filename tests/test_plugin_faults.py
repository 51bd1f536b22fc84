"""A plugin that calls ``sys.exit`` while loading is a failed plugin like one that raises;
``KeyboardInterrupt`` still stops the command."""
from __future__ import annotations

import pytest

from speechforge.plugins import create_host
from tests.test_plugins import TINY_PLUGIN, make_distribution


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_system_exit_at_import_is_a_recorded_failure_and_others_load(site, caplog):
    make_distribution(site, "exiting-plugin", "exiting_plugin", "import sys\nsys.exit('no GPU here')\n", "exiting")
    make_distribution(site, "tiny-plugin", "tiny_plugin", TINY_PLUGIN, "tiny")
    host = create_host()
    assert [f.name for f in host.failed] == ["exiting"]
    assert "plugin 'exiting' (from exiting-plugin) failed: SystemExit: no GPU here" in caplog.text
    assert "halving" in host.registry.names("ffn")


def test_system_exit_in_register_components_leaves_no_components(site):
    exiting = TINY_PLUGIN.replace('registry.register("ffn", "halving", Halving)', 'registry.register("ffn", "halving", Halving)\n    raise SystemExit(3)')
    make_distribution(site, "exiting-plugin", "exiting_plugin", exiting, "exiting")
    host = create_host()
    assert [f.name for f in host.failed] == ["exiting"]
    assert "halving" not in host.registry.names("ffn")


def test_keyboard_interrupt_at_import_still_stops(site):
    make_distribution(site, "stopping-plugin", "stopping_plugin", "raise KeyboardInterrupt\n", "stopping")
    with pytest.raises(KeyboardInterrupt):
        create_host()
