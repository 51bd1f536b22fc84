"""Config → model, through registries only.

The ``task`` key names the task component (``asr`` by default); every top-level key that is
not a runtime section (see :data:`speechforge.config.RUNTIME_SECTIONS`) is passed to the task
factory, so a misspelt section fails with the closest valid name.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from speechforge.config import RUNTIME_SECTIONS
from speechforge.errors import ConfigError
from speechforge.plugins import PluginHost, default_host


def model_sections(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``config`` that describes the model."""
    return {k: v for k, v in config.items() if k not in RUNTIME_SECTIONS}


def build_model(config: Mapping[str, Any], host: PluginHost | None = None) -> nn.Module:
    """Build the model ``config`` describes and let plugins see it (``model_built``).

    Args:
        config: a resolved experiment config (a mapping, e.g. from :func:`load_config`).
        host: the plugin host; the process-wide one (all installed plugins) by default.
    """
    host = host or default_host()
    task = config.get("task", "asr")
    if "vocab_size" not in config:
        raise ConfigError("vocab_size: missing; the tokenizer stage sets it, or give it directly")
    vocab_size = config["vocab_size"]
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
        raise ConfigError(f"vocab_size: expected an integer, got {vocab_size!r}")
    model = host.registry.build(
        "task", {"type": task, **model_sections(config)}, "", vocab_size=vocab_size
    )
    host.hook.model_built(model=model, config=config)
    return model
