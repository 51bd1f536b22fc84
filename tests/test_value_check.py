"""Config values are checked against factory hints, runtime dataclasses and declared ranges."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Literal

import pytest

from speechforge.builder import build_model
from speechforge.cli import main
from speechforge.config import load_config, merge_overrides, save_config
from speechforge.errors import ConfigError
from speechforge.train.options import check_runtime_sections
from speechforge.value_check import Range, check_value

RECIPES = sorted((Path(__file__).parents[1] / "egs" / "librispeech" / "conf").glob("*.yaml"))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("encoder.num_blocks=two", "encoder.num_blocks: expected an integer, got 'two'"),
        ("encoder.heads=5", "encoder.encoder_block.attention: d_model (32) must be divisible by heads (5)"),
        ("encoder.dropout=1.5", "encoder.dropout: expected a number >= 0 and < 1, got 1.5"),
        ("encoder.ffn.activation=relux", "encoder.ffn: unknown activation 'relux'"),
        ("encoder.subsampling=3", "encoder: subsampling factor must be one of [4, 6, 8], got 3"),
        ("encoder.ffn.hidden=[64]", "encoder.ffn.hidden: expected an integer, got [64]"),
        ("encoder.ffn.gated=maybe", "encoder.ffn.gated: expected true or false, got 'maybe'"),
    ],
)
def test_model_values_are_checked_against_the_factory(tiny_config, override, message):
    config = merge_overrides(tiny_config, [override])
    with pytest.raises(ConfigError) as error:
        build_model(config)
    assert str(error.value).startswith(message)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.max_seconds=0", "data.max_seconds: expected a number > 0, got 0"),
        ("data.max_seconds=abc", "data.max_seconds: expected a number, got 'abc'"),
        ("train.accum_grad=0", "train.accum_grad: expected an integer >= 1, got 0"),
        ("optim.lr=fast", "optim.lr: expected a number, got 'fast'"),
        ("optim.betas=[0.9,1.5]", "optim.betas: expected a list of numbers >= 0 and < 1, got [0.9, 1.5]"),
        ("scheduler.type=cosin", "scheduler.type: expected one of 'constant', 'noam', 'linear', 'cosine', got 'cosin'; did you mean cosine?"),
        ("tokenizer.vocab_size=abc", "tokenizer.vocab_size: expected an integer, got 'abc'"),
        ("train.keep_checkpoints=0", "train.keep_checkpoints: expected an integer >= 1, got 0"),
        ("train.init_from.include=encoder", "train.init_from.include: expected a list of strings, got 'encoder'"),
        ("data.subset.fraction=2", "data.subset.fraction: expected a number >= 0 and <= 1, got 2"),
        ("decode.beam_size=0", "decode.beam_size: expected an integer >= 1, got 0"),
    ],
)
def test_runtime_values_are_checked_against_their_dataclass(override, message):
    with pytest.raises(ConfigError) as error:
        check_runtime_sections(merge_overrides({}, [override]))
    assert str(error.value) == message


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_config_passes_the_checks(recipe):
    check_runtime_sections(load_config(recipe))


def test_hints_accept_what_they_name_and_nothing_else():
    check_value(3, float, "k")  # an integer is a number
    check_value(None, int | None, "k")
    check_value("ab", Literal["ab", "cd"], "k")
    check_value(0.5, Annotated[float, Range(gt=0, le=1)], "k")
    check_value(object(), Path, "k")  # a hint we cannot judge accepts
    for value, hint in [(True, int), (2.5, int), ("1", float), ("x", list[str]), (0, Annotated[int, Range(gt=0)])]:
        with pytest.raises(ConfigError, match=r"^k: expected "):
            check_value(value, hint, "k")


def test_config_show_refuses_a_bad_value_in_one_line(tmp_path, capsys):
    path = tmp_path / "conf.yaml"
    save_config(copy.deepcopy({"optim": {"lr": 1e-3}}), path)
    assert main(["config", "show", str(path), "optim.lr=fast"]) == 2
    assert capsys.readouterr().err == "speechforge config: error: optim.lr: expected a number, got 'fast'\n"
