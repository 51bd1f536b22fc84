"""Experiment configs: omegaconf YAML plus dotted overrides, resolved and saved as run.

A config holds the model sections the task declares (``frontend``, ``encoder``, ``decoder``,
``losses``...) plus the runtime sections below. Unknown top-level keys are errors.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from speechforge.errors import ConfigError

T = TypeVar("T")

#: Sections read by the runtime, not the model builder.
RUNTIME_SECTIONS = ("task", "vocab_size", "tokenizer", "lm", "data", "optim", "scheduler", "train", "decode", "quantizer")


def load_config(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Read YAML, apply ``key.sub=value`` overrides, resolve interpolations.

    Returns a plain dict. Errors name the file or the override.
    """
    path = Path(path)
    try:
        base = OmegaConf.load(path)
    except FileNotFoundError as error:
        raise ConfigError(f"config file not found: {path}") from error
    except (OmegaConfBaseException, ValueError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(base, DictConfig):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(base).__name__}")
    return merge_overrides(base, overrides, source=str(path))


def merge_overrides(
    config: Mapping[str, Any] | DictConfig, overrides: Sequence[str] = (), source: str = "config"
) -> dict[str, Any]:
    """Apply dotted ``key=value`` overrides (values parsed as YAML) and resolve. A number
    addresses an element of a list (``losses.1.weight=0.3``); one outside the list is an error
    naming the key and the list's length."""
    merged = OmegaConf.create(config if isinstance(config, DictConfig) else dict(config))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. encoder.num_blocks=6")
        key = item.split("=", 1)[0]
        _check_list_indices(OmegaConf.to_container(merged, resolve=False), key)
        try:
            merged.merge_with_dotlist([item])  # updates in place, through lists too
        except yaml.YAMLError as error:
            raise ConfigError(f"override {key}: the value {item.split('=', 1)[1]!r} is not valid YAML") from error
        except (OmegaConfBaseException, TypeError, ValueError, IndexError) as error:
            raise ConfigError(f"override {key}: {str(error).strip().splitlines()[0]}") from error
    try:
        resolved = OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as error:
        raise ConfigError(f"{source}: cannot resolve {error.full_key if hasattr(error, 'full_key') else ''}: {error}") from error
    assert isinstance(resolved, dict)
    return resolved


def _check_list_indices(config: Any, key: str) -> None:
    """Where dotted ``key`` passes through a list of ``config``, its part there must be an index
    into that list (an override cannot add an element: the whole list is given instead)."""
    node = config
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if isinstance(node, Mapping):
            if part not in node:
                return  # a new key: nothing below it to check
            node = node[part]
        elif isinstance(node, list):
            path = ".".join(parts[:depth])
            entries = f"{len(node)} {'entry' if len(node) == 1 else 'entries'}"
            indices = f"indices 0 to {len(node) - 1}" if node else "no index"
            try:
                index = int(part)
            except ValueError:
                raise ConfigError(f"override {key}: {path} is a list of {entries}; {part!r} is not an index ({indices})") from None
            if not -len(node) <= index < len(node):
                raise ConfigError(
                    f"override {key}: {path} has {entries} ({indices}), got {index}; "
                    f"to add one, give the whole list: {path}=[...]"
                )
            node = node[index]
        else:
            return


def to_yaml(config: Mapping[str, Any]) -> str:
    return OmegaConf.to_yaml(OmegaConf.create(dict(config)))


def save_config(config: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write the exact config that ran, atomically."""
    atomic_write_text(Path(path), to_yaml(config))


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 text to a temporary file beside ``path`` and rename it over ``path``: a crash
    or a full disk leaves the previous file. An OSError names ``path`` (not the temporary file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp creates 0600; these files are meant to be shared
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise


def section(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A runtime section as a dict ({} when absent); an error when it is not a mapping."""
    value = config.get(name) or {}
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name}: expected a mapping, got {value!r}")
    return dict(value)


def parse_section(schema: type[T], config: Mapping[str, Any], name: str) -> T:
    """Build the dataclass ``schema`` from section ``name``; unknown keys name the closest, and
    each value is checked against its field's hint and ``Range``."""
    from speechforge.registry import closest
    from speechforge.value_check import check_keys

    values = section(config, name)
    known = [f.name for f in dataclasses.fields(schema)]  # type: ignore[arg-type]
    for key in values:
        if key not in known:
            match = closest(key, known)
            hint = f"; did you mean {match}?" if match else ""
            raise ConfigError(f"{name}.{key}: unknown key{hint} (valid keys: {', '.join(known)})")
    check_keys(schema, values, name)
    try:
        return schema(**values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{name}: {error}") from error
