"""The quant plugin's hooks: the ``absmean_binary`` and ``minmax`` quantizers, the
``quant-report`` command and its section of ``report.md``."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from speechforge.hookspecs import hookimpl
from speechforge.plugin_commands import PluginCommands
from speechforge.registry import ComponentRegistry
from speechforge_plugins.quant.absmean_binary_quantizer import AbsmeanBinaryQuantizer
from speechforge_plugins.quant.minmax_quantizer import MinMaxQuantizer
from speechforge_plugins.quant.quant_report import add_quant_report, config_size_report, packed_file


@hookimpl
def register_components(registry: ComponentRegistry) -> None:
    registry.register("quantizer", AbsmeanBinaryQuantizer.name, AbsmeanBinaryQuantizer)
    registry.register("quantizer", MinMaxQuantizer.name, MinMaxQuantizer)


@hookimpl
def add_commands(commands: PluginCommands) -> None:
    add_quant_report(commands)


@hookimpl
def report_sections(exp_dir: Path, config: Mapping[str, Any]) -> list[str] | None:
    """The size table of a quantized experiment; None for a float one."""
    if config.get("quantizer") is None:
        return None
    return [config_size_report(config, str(exp_dir / "config.yaml"), packed_file(exp_dir)).markdown()]
