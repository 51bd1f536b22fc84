"""Config → model, through registries only.

The ``task`` key names the task component (``asr`` by default); every top-level key that is
not a runtime section (see :data:`speechforge.config.RUNTIME_SECTIONS`) is passed to the task
factory, so a misspelt section fails with the closest valid name. A ``quantizer:`` section
names a registered :class:`~speechforge.interfaces.Quantizer`, applied to every model built
from the config.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from speechforge.config import RUNTIME_SECTIONS
from speechforge.empty_parameters import parameters_on_meta
from speechforge.errors import ConfigError
from speechforge.interfaces import Quantizer
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


def build_quantizer(config: Mapping[str, Any], host: PluginHost | None = None) -> Quantizer | None:
    """The config's ``quantizer:`` section built from the ``quantizer`` registry (its keys
    checked like any component's), or None when the config has no such section."""
    if config.get("quantizer") is None:
        return None
    return (host or default_host()).registry.build("quantizer", config["quantizer"], "quantizer")


def build_model(
    config: Mapping[str, Any],
    host: PluginHost | None = None,
    initialize: Callable[[nn.Module], None] | None = None,
    *,
    packed: bool = False,
) -> nn.Module:
    """Build the model ``config`` describes and let plugins see it (``model_built``).

    With a ``quantizer:`` section the quantizer's ``prepare`` runs after ``initialize`` (float
    weights load under their float names first) and before the hooks and any optimizer.

    Args:
        config: a resolved experiment config (a mapping, e.g. from :func:`load_config`).
        host: the plugin host; the process-wide one (all installed plugins) by default.
        initialize: called with the fresh model before the quantizer and the ``model_built``
            hooks (the trainer loads ``train.init_from`` weights here, so layers that are
            swapped or parametrized later receive them under their original names).
        packed: build the packed inference form of a quantized model instead (what
            ``speechforge export`` wrote): parameters on the meta device, the quantizer's
            targets swapped by :meth:`~speechforge.interfaces.Quantizer.packed_form`; the caller
            fills it with ``load_state_dict(exported, assign=True)``. ``initialize`` is not used.
    """
    host = host or default_host()
    quantizer = build_quantizer(config, host)
    if packed and quantizer is None:
        raise ConfigError("quantizer: missing; a packed model is built by the quantizer that packed it")
    if packed:
        with parameters_on_meta():
            model = _build_task(config, host)
        model = quantizer.packed_form(model)
    else:
        model = _build_task(config, host)
        if initialize is not None:
            initialize(model)
        if quantizer is not None:
            model = quantizer.prepare(model)
    host.hook.model_built(model=model, config=config)
    return model


def _build_task(config: Mapping[str, Any], host: PluginHost) -> nn.Module:
    """The task component of ``config`` with its model sections."""
    task = config.get("task", "asr")
    context: dict[str, Any] = {}
    if "vocab_size" in config:
        vocab_size = config["vocab_size"]
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
            raise ConfigError(f"vocab_size: expected an integer, got {vocab_size!r}")
        context["vocab_size"] = vocab_size
    elif task_needs_transcripts(config, host):
        raise ConfigError("vocab_size: missing; the tokenizer stage sets it, or give it directly")
    return host.registry.build("task", {"type": task, **model_sections(config)}, "", **context)
