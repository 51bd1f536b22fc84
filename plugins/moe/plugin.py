"""The MoE plugin's hooks: components at start-up, expert load after every training step and
in the report."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from speechforge.hookspecs import hookimpl
from speechforge.registry import ComponentRegistry
from speechforge_plugins.moe.expert_load import step_load_metrics
from speechforge_plugins.moe.moe_aux_loss import MoEAuxLoss
from speechforge_plugins.moe.moe_feed_forward import MoEFeedForward
from speechforge_plugins.moe.report import expert_load_section


@hookimpl
def register_components(registry: ComponentRegistry) -> None:
    registry.register("ffn", "moe", MoEFeedForward)
    registry.register("loss", "moe_aux", MoEAuxLoss)


@hookimpl
def after_train_step(model: nn.Module, step: int, losses: Mapping[str, float]) -> Mapping[str, float] | None:
    """Per-layer expert load of the step (see :func:`step_load_metrics`); None without MoE."""
    return step_load_metrics(model) or None


@hookimpl
def report_sections(exp_dir: Path, config: Mapping[str, Any]) -> list[str] | None:
    """The expert-load heatmap and table; None for a model without MoE layers."""
    section = expert_load_section(exp_dir, config)
    return [section] if section else None
