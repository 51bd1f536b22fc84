"""``speechforge quant-report EXP_OR_CONFIG [--json]``: the paper's Table 2 for a quantized
model, from an experiment dir, an export dir or a config file, without allocating its weights.

    speechforge quant-report egs/librispeech/conf/usm_rnnt_binary.yaml
    speechforge quant-report egs/librispeech/conf/usm_rnnt_small_2bit.yaml vocab_size=40
    speechforge quant-report exp/usm_rnnt_small_binary --json
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from speechforge.builder import build_model, build_quantizer
from speechforge.config import load_config
from speechforge.decode.recognizer import EXPORTED, without_cmvn_file
from speechforge.empty_parameters import parameters_on_meta
from speechforge.errors import ConfigError
from speechforge.plugin_commands import PluginCommands
from speechforge.plugins import PluginHost, default_host
from speechforge.train.checkpoint import PACKED, load_checkpoint
from speechforge_plugins.quant.size_report import SizeReport, size_report
from speechforge_plugins.quant.weight_quantizer import WeightQuantizer

EXPORT_DIR = "export"


def add_quant_report(commands: PluginCommands) -> None:
    parser = commands.add_parser("quant-report", help="model size in bits, float vs quantized (Table 2)")
    parser.add_argument("path", type=Path, help="an experiment or export dir, or a config file with a quantizer: section")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides (vocab_size=40 for a character config)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    report = report_for(args.path, args.overrides)
    if args.json:
        print(json.dumps(report.as_json()))
    else:
        print(report.markdown(), end="")
    return 0


def report_for(path: Path, overrides: Sequence[str] = (), host: PluginHost | None = None) -> SizeReport:
    """The size report of the config at ``path`` (a YAML file, or a dir's ``config.yaml``)
    with ``overrides``, and the packed file's size when the dir is an export or holds ``export/``."""
    config_path = path / "config.yaml" if path.is_dir() else path
    config = load_config(config_path, overrides)
    return config_size_report(config, str(config_path), packed_file(path) if path.is_dir() else None, host)


def config_size_report(
    config: Mapping[str, Any], source: str, packed: Path | None = None, host: PluginHost | None = None
) -> SizeReport:
    """Table 2 for ``config`` (read from ``source``): its model built with parameters on the meta
    device and without the quantizer, the quantizer counting the targets' packed sizes."""
    host = host or default_host()
    quantizer = build_quantizer(config, host)
    if quantizer is None:
        raise ConfigError(f"{source}: no quantizer: section; the size report counts a quantized model")
    if not isinstance(quantizer, WeightQuantizer):
        raise ConfigError(f"{source}: quantizer {type(quantizer).__name__} is not one of the quant plugin's")
    float_config = {key: value for key, value in without_cmvn_file(dict(config)).items() if key != "quantizer"}
    if "vocab_size" not in float_config and (config.get("tokenizer") or {}).get("vocab_size"):
        float_config["vocab_size"] = config["tokenizer"]["vocab_size"]
    with parameters_on_meta():
        model = build_model(float_config, host)
    return size_report(model, quantizer, packed)


def packed_file(directory: Path) -> Path | None:
    """The packed export of an export dir, or of an experiment dir's ``export/``; None when
    neither has one."""
    for candidate in (directory / EXPORTED, directory / EXPORT_DIR / EXPORTED):
        if candidate.is_file() and load_checkpoint(candidate, mmap=True).get(PACKED):
            return candidate
    return None
