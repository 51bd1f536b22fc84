"""The plugin contract: every hook speechforge calls, grouped by lifecycle phase.

A plugin is a module (or object) with functions marked ``@speechforge.hookimpl`` whose names
match the specs below; it is found through an entry point in the group
``speechforge.plugins``. Hooks with no ``firstresult`` call every implementation and collect
the non-None answers in a list.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from torch import nn

    from speechforge.deploy.onnx_exporter import OnnxExporter
    from speechforge.interfaces import Progress
    from speechforge.plugin_commands import PluginCommands
    from speechforge.registry import ComponentRegistry

PROJECT = "speechforge"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -- start-up --------------------------------------------------------------------------------
@hookspec
def register_components(registry: ComponentRegistry) -> None:
    """Called once when plugins are loaded, before any model is built.

    Register this plugin's components with ``registry.register(kind, name, factory)``; a
    plugin may also declare a kind of its own with ``registry.add_kind``. Registering a name
    that another plugin already owns raises an error naming both owners.

    :param registry: the process's component registry.
    """


@hookspec
def add_commands(commands: PluginCommands) -> None:
    """Called when the ``speechforge`` command builds its parser, after the core commands.

    Add subcommands with ``commands.add_parser(name, help=...)`` (argparse's arguments; the
    result is the subcommand's ``ArgumentParser``) and ``parser.set_defaults(run=function)``,
    ``function(args) -> int`` being the exit status. ``speechforge --help`` lists each one with
    the plugin's name. A name that is already a command, or any error raised here, marks the
    plugin as failed (``speechforge plugins`` names it and exits 1); the other commands still work.

    :param commands: the sub-parsers, attributing what this plugin adds to it.
    """


# -- model -----------------------------------------------------------------------------------
@hookspec
def model_built(model: nn.Module, config: Mapping[str, Any]) -> None:
    """Called after the builder has built a model from ``config``, before training or decoding.

    Plugins that must change the model as a whole act here. Change ``model`` in place. Weights
    from ``train.init_from`` are loaded before this hook, and the config's ``quantizer:`` has
    prepared its targets after them; a resumed run's checkpoint is loaded after this hook.

    :param model: the model just built.
    :param config: the full experiment config it was built from (read-only).
    """


# -- training --------------------------------------------------------------------------------
@hookspec
def before_train_step(model: nn.Module, step: int, progress: Progress) -> None:
    """Called before each optimizer step's forward passes (once per accumulated step).

    :param model: the model being trained (unwrapped from DDP).
    :param step: the number of optimizer steps done so far.
    :param progress: the run's position before this step (``progress.step == step``).
    """


@hookspec
def after_train_step(
    model: nn.Module, step: int, losses: Mapping[str, float], progress: Progress
) -> Mapping[str, float] | None:
    """Called after each optimizer step.

    :param model: the model being trained (unwrapped from DDP).
    :param step: the number of optimizer steps done, this one included.
    :param losses: the step's loss parts, averaged over accumulated micro-batches.
    :param progress: the run's position after this step (``progress.step == step``).
    :return: extra scalars to log under this name (for instance expert load), or None.
    """


# -- checkpoints -----------------------------------------------------------------------------
@hookspec
def checkpoint_save(state: dict[str, Any]) -> None:
    """Called before a checkpoint is written; plugins may add entries of their own.

    Values must be tensors, numbers, strings, lists or dicts of them (checkpoints are loaded
    with ``weights_only=True``).

    :param state: the checkpoint mapping about to be written (mutable).
    """


@hookspec
def checkpoint_load(state: Mapping[str, Any], model: nn.Module) -> None:
    """Called after a checkpoint's weights were loaded into ``model``.

    :param state: the whole checkpoint mapping, plugin entries included.
    :param model: the model the weights were loaded into.
    """


# -- reports -------------------------------------------------------------------------------
@hookspec
def report_sections(exp_dir: Path, config: Mapping[str, Any]) -> list[str] | None:
    """Called by ``speechforge report`` while it writes ``EXP/report.md``.

    :param exp_dir: the experiment directory (figures may be written into it).
    :param config: the experiment config.
    :return: Markdown sections to append (each starting with a ``##`` heading), or None when
        the plugin has nothing to say about this experiment.
    """


# -- export ----------------------------------------------------------------------------------
@hookspec
def export_model(model: nn.Module, config: Mapping[str, Any], out_dir: Path) -> list[Path] | None:
    """Called by ``speechforge export`` after the averaged model is written to ``out_dir``.

    Plugins write their own artefacts beside it (a quantized model is already packed in
    ``model.pt`` by its ``quantizer``).

    :param model: the model being exported, in eval mode.
    :param config: the experiment config.
    :param out_dir: the export directory.
    :return: the paths this plugin wrote, or None.
    """


@hookspec
def onnx_exporter(model: nn.Module) -> OnnxExporter | None:
    """Called by ``speechforge export --format onnx`` before it writes anything, to find the
    ONNX layout of ``model``.

    A plugin whose components need a layout of their own (the rnnt plugin's transducers:
    icefall's encoder / decoder / joiner) returns its exporter for a model that holds them,
    and None for any other. Answer from what the model is, without raising: the export calls
    the exporter's ``check`` (one-line ``ConfigError`` refusals) before writing anything and
    ``export`` after ``model.pt``. With no answer the model is exported as sherpa-onnx's WeNet
    CTC layout; two answers are an error naming both layouts.

    :param model: the model being exported, as built from the experiment's config.
    :return: an :class:`~speechforge.deploy.onnx_exporter.OnnxExporter`, or None.
    """
