"""The keyword arguments a search factory gets, from the config and the command line.

Precedence, lowest first: ``decode.beam_size`` (for every method whose factory takes a
``beam_size``), ``decode.options.METHOD`` (any key of that method's factory), then the command
line's ``--beam-size`` and ``--option METHOD.key=value``. Keys are checked against the factory's
signature when the search is built, so a misspelt one fails naming
``decode.options.METHOD.key`` and the closest valid key.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from speechforge.config import parse_section
from speechforge.errors import ConfigError, RegistryError
from speechforge.registry import ComponentRegistry
from speechforge.train.options import DecodeOptions

OPTION_FORMAT = "METHOD.key=value, e.g. ctc_prefix_beam_search.beam_size=4"
#: ``decode`` keys of earlier configs that are now keys of the searches taking them
MOVED_KEYS = {
    "lm_weight": "ctc_prefix_beam_search_lm", "lm_bonus": "ctc_prefix_beam_search_lm",
    "ctc_weight": "attention_rescoring", "reverse_weight": "attention_rescoring",
}  # fmt: skip


def read_decode_options(config: Mapping[str, Any]) -> DecodeOptions:
    """The config's ``decode`` section, checked; a key that moved into ``decode.options`` says
    where it went."""
    for key, method in MOVED_KEYS.items():
        if key in (config.get("decode") or {}):
            raise ConfigError(f"decode.{key}: now a key of each search that takes it, e.g. decode.options.{method}.{key}")
    return parse_section(DecodeOptions, config, "decode")


def takes(registry: ComponentRegistry, method: str, key: str) -> bool:
    """Whether search ``method``'s factory has a parameter ``key``."""
    return key in inspect.signature(registry.get("search", method).factory).parameters


def search_options(
    registry: ComponentRegistry, decode: DecodeOptions, method: str, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``decode.beam_size`` where ``method`` takes one, then ``decode.options.METHOD``, then
    ``overrides`` (the command line's or a Python caller's)."""
    options: dict[str, Any] = {"beam_size": decode.beam_size} if takes(registry, method, "beam_size") else {}
    options.update(decode.options.get(method) or {})
    options.update(overrides or {})
    return options


def check_configured_methods(registry: ComponentRegistry, decode: DecodeOptions) -> None:
    """Every ``decode.options`` entry names a registered search and maps keys to values."""
    for method, options in decode.options.items():
        try:
            registry.get("search", method)
        except RegistryError as error:
            raise ConfigError(f"decode.options.{method}: {error}") from error
        if not isinstance(options, Mapping):
            raise ConfigError(f"decode.options.{method}: expected a mapping of {method}'s keys, got {options!r}")


def parse_option_overrides(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``--option METHOD.key=value`` arguments (values read as YAML: ``4``, ``0.5``, ``null``)
    as ``{METHOD: {key: value}}``."""
    overrides: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, text = item.partition("=")
        method, dot, key = target.rpartition(".")
        if not (sep and dot and method and key):
            raise ConfigError(f"--option {item!r}: expected {OPTION_FORMAT}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"--option {item!r}: the value is not valid YAML: {error}") from error
        overrides.setdefault(method, {})[key] = value
    return overrides


def check_override_methods(overrides: Mapping[str, Mapping[str, Any]], methods: Sequence[str]) -> None:
    """An ``--option`` for a method this command does not run would be silently ignored."""
    for method, options in overrides.items():
        if method not in methods:
            key = next(iter(options))
            raise ConfigError(f"--option {method}.{key}: {method} is not decoded here (methods: {', '.join(methods)})")
