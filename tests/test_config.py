"""Config loading: YAML + dotted overrides, interpolation, saving, section schemas."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from speechforge.config import load_config, parse_section, save_config
from speechforge.errors import ConfigError


@pytest.fixture
def conf(tmp_path):
    path = tmp_path / "model.yaml"
    path.write_text(
        "encoder:\n  type: conformer\n  num_blocks: 12\n  d_model: 256\n"
        "decoder_dim: ${encoder.d_model}\n"
        "losses:\n  - {type: ctc, weight: 1.0}\n"
    )
    return path


def test_overrides_are_applied_and_interpolations_resolved(conf):
    config = load_config(conf, ["encoder.num_blocks=6", "encoder.d_model=144", "train.lr=1e-3"])
    assert config["encoder"]["num_blocks"] == 6
    assert config["decoder_dim"] == 144
    assert config["train"]["lr"] == pytest.approx(1e-3)


def test_list_values_parse_as_yaml(conf):
    config = load_config(conf, ["losses=[{type: ctc, weight: 0.3}]"])
    assert config["losses"] == [{"type": "ctc", "weight": 0.3}]


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_invalid_yaml_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("encoder: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)


def test_top_level_must_be_a_mapping(tmp_path):
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad)


def test_override_without_equals(conf):
    with pytest.raises(ConfigError, match="override 'encoder.num_blocks': expected key=value"):
        load_config(conf, ["encoder.num_blocks"])


def test_saved_config_reloads_identically(conf, tmp_path):
    config = load_config(conf, ["encoder.num_blocks=3"])
    save_config(config, tmp_path / "exp" / "config.yaml")
    assert load_config(tmp_path / "exp" / "config.yaml") == config
    assert not list((tmp_path / "exp").glob("*.tmp"))


@dataclass
class Optim:
    lr: float = 1e-3
    weight_decay: float = 0.0


def test_parse_section_checks_keys():
    assert parse_section(Optim, {"optim": {"lr": 0.5}}, "optim") == Optim(lr=0.5)
    assert parse_section(Optim, {}, "optim") == Optim()
    with pytest.raises(ConfigError, match=r"optim\.weight_decy: unknown key; did you mean weight_decay\?"):
        parse_section(Optim, {"optim": {"weight_decy": 0.1}}, "optim")
    with pytest.raises(ConfigError, match="optim: expected a mapping"):
        parse_section(Optim, {"optim": 3}, "optim")
