"""Config → model, through registries only.

The ``task`` key names the task component (``asr`` by default); every top-level key that is
not a runtime section (see :data:`speechforge.config.RUNTIME_SECTIONS`) is passed to the task
factory, so a misspelt section fails with the closest valid name.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from speechforge.config import RUNTIME_SECTIONS
from speechforge.errors import ConfigError
from speechforge.plugins import PluginHost, default_host


def model_sections(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``config`` that describes the model."""
    return {k: v for k, v in config.items() if k not in RUNTIME_SECTIONS}


def task_needs_transcripts(config: Mapping[str, Any], host: PluginHost | None = None) -> bool:
    """Whether the config's task trains on transcripts (``Task.needs_transcripts`` of the
    registered class; a task registered through a plain function is assumed to)."""
    host = host or default_host()
    factory = host.registry.get("task", config.get("task", "asr")).factory
    return bool(getattr(factory, "needs_transcripts", True))


def build_model(
    config: Mapping[str, Any],
    host: PluginHost | None = None,
    initialize: Callable[[nn.Module], None] | None = None,
) -> nn.Module:
    """Build the model ``config`` describes and let plugins see it (``model_built``).

    Args:
        config: a resolved experiment config (a mapping, e.g. from :func:`load_config`).
        host: the plugin host; the process-wide one (all installed plugins) by default.
        initialize: called with the fresh model before the ``model_built`` hooks (the trainer
            loads ``train.init_from`` weights here, so plugins that swap layers in
            ``model_built`` receive them under their original names).
    """
    host = host or default_host()
    task = config.get("task", "asr")
    context: dict[str, Any] = {}
    if "vocab_size" in config:
        vocab_size = config["vocab_size"]
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
            raise ConfigError(f"vocab_size: expected an integer, got {vocab_size!r}")
        context["vocab_size"] = vocab_size
    elif task_needs_transcripts(config, host):
        raise ConfigError("vocab_size: missing; the tokenizer stage sets it, or give it directly")
    model = host.registry.build("task", {"type": task, **model_sections(config)}, "", **context)
    if initialize is not None:
        initialize(model)
    host.hook.model_built(model=model, config=config)
    return model
