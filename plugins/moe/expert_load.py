"""Expert load: per-step metrics for the training log, totals and a heatmap for the report.

Layers are numbered in the order of ``model.named_modules()`` (for a Conformer encoder: block 0
macaron FFN, block 0 FFN, block 1 macaron FFN, ...).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn

from speechforge_plugins.moe.moe_feed_forward import MoEFeedForward


def moe_layers(model: nn.Module) -> list[tuple[str, MoEFeedForward]]:
    """The MoE layers of ``model`` with their module names, in module order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, MoEFeedForward)]


def step_load_metrics(model: nn.Module) -> dict[str, float]:
    """Load of each MoE layer since the previous call, then reset the step counters and drop
    the kept routing.

    Returns per layer i: ``moe/layer{i}/max_load_frac`` (the busiest expert's share of the
    assignments; 1/E is perfect balance, 1.0 collapse), ``moe/layer{i}/min_load_frac``, and
    ``moe/layer{i}/dropped_frac`` for layers with a capacity factor. Layers that saw no
    training frames are left out.
    """
    metrics: dict[str, float] = {}
    for i, (_, layer) in enumerate(moe_layers(model)):
        routed, dropped = layer.pop_step_counts()
        layer.clear_router_state()
        total = sum(routed)
        if total == 0:
            continue
        metrics[f"moe/layer{i}/max_load_frac"] = max(routed) / total
        metrics[f"moe/layer{i}/min_load_frac"] = min(routed) / total
        if layer.capacity_factor is not None:
            metrics[f"moe/layer{i}/dropped_frac"] = sum(dropped) / total
    return metrics


def expert_counts(model: nn.Module) -> list[list[int]]:
    """Assignments per expert over all training so far, one row per MoE layer (saved in
    checkpoints, so a loaded model gives its training totals)."""
    return [layer.total_counts for _, layer in moe_layers(model)]


def plot_expert_heatmap(counts: Sequence[Sequence[int]], path: str | Path) -> Path:
    """Write a PNG heatmap of expert load, layers x experts, each row as shares of its layer.

    Args:
        counts: one row of per-expert counts per layer, e.g. :func:`expert_counts`.
        path: the PNG to write (parent directories are created).
    Returns: the path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not counts or not counts[0]:
        raise ValueError(f"counts: need at least one layer with one expert, got {counts!r}")
    widths = {len(row) for row in counts}
    if len(widths) != 1:
        raise ValueError(f"counts: every layer needs the same number of experts, got row lengths {sorted(widths)}")
    shares = [[c / max(sum(row), 1) for c in row] for row in counts]
    layers, experts = len(shares), len(shares[0])
    figure = Figure(figsize=(1.2 + 0.5 * experts, 1.0 + 0.3 * layers))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(shares, aspect="auto", cmap="viridis", vmin=0.0)
    axes.set_xlabel("expert")
    axes.set_ylabel("MoE layer")
    axes.set_xticks(range(experts))
    axes.set_yticks(range(layers))
    axes.set_title(f"share of assignments per expert (uniform = {1 / experts:.3f})")
    figure.colorbar(image, ax=axes)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
    return path
