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


@pytest.fixture
def two_losses(tmp_path):
    path = tmp_path / "two_losses.yaml"
    path.write_text("losses:\n  - {type: ctc, weight: 0.3}\n  - {type: attention, weight: 0.7, lsm_weight: 0.1}\n")
    return path


def test_a_number_in_an_override_addresses_a_list_element(two_losses):
    config = load_config(two_losses, ["losses.1.lsm_weight=0.0", "losses.-2.weight=0.5"])
    assert config["losses"] == [{"type": "ctc", "weight": 0.5}, {"type": "attention", "weight": 0.7, "lsm_weight": 0.0}]


def test_a_list_index_out_of_range_names_the_key_and_the_length(two_losses):
    with pytest.raises(ConfigError) as error:
        load_config(two_losses, ["losses.2.weight=0.5"])
    assert str(error.value) == (
        "override losses.2.weight: losses has 2 entries (indices 0 to 1), got 2; to add one, give the whole list: losses=[...]"
    )
    with pytest.raises(ConfigError) as error:
        load_config(two_losses, ["losses.ctc.weight=0.5"])
    assert str(error.value) == "override losses.ctc.weight: losses is a list of 2 entries; 'ctc' is not an index (indices 0 to 1)"


def test_an_override_value_that_is_not_yaml_is_one_line(conf):
    with pytest.raises(ConfigError) as error:
        load_config(conf, ["encoder.num_blocks=[1,"])
    assert str(error.value) == "override encoder.num_blocks: the value '[1,' is not valid YAML"
