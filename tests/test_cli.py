"""The speechforge command: plugin table and config inspection."""
from __future__ import annotations

import yaml

from speechforge.cli import main


def test_plugins_table(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["plugin", "package", "kind", "components"]
    assert any(line.split()[:3] == ["speechforge", "speechforge", "encoder"] for line in out.splitlines())


def test_config_show_resolves_overrides_and_counts_parameters(tmp_path, capsys, tiny_config):
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    assert main(["config", "show", str(path), "encoder.num_blocks=1", "--params"]) == 0
    out = capsys.readouterr().out
    shown, table = out.split("# parameters")
    assert yaml.safe_load(shown)["encoder"]["num_blocks"] == 1
    rows = dict(line.rsplit(None, 1) for line in table.strip().splitlines())
    counts = {k.strip(): int(v.replace(",", "")) for k, v in rows.items()}
    assert counts["total"] == counts["frontend"] + counts["encoder"] + counts["ctc"] + counts["losses"]
    assert counts["encoder.blocks"] > 0


def test_config_errors_exit_2_with_the_key(tmp_path, capsys, tiny_config):
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    assert main(["config", "show", str(path), "encoder.num_blokcs=1", "--params"]) == 2
    assert "encoder.num_blokcs: unknown key for encoder 'conformer'; did you mean num_blocks?" in capsys.readouterr().err
