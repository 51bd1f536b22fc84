"""The MoE section of ``report.md``: expert load over the whole training run, as a heatmap
(layers x experts) and the busiest/idlest expert per layer."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from speechforge.builder import build_model
from speechforge.train.checkpoint import load_checkpoint, load_model_weights
from speechforge_plugins.moe.expert_load import expert_counts, moe_layers, plot_expert_heatmap

HEATMAP = "expert_load.png"


def expert_load_section(exp_dir: Path, config: Mapping[str, Any]) -> str | None:
    """Markdown for the report, or None when the model has no MoE layer or nothing trained yet.

    The totals come from ``checkpoints/latest`` (the end of training): an averaged model
    carries the counts of only one of the checkpoints it averages.
    """
    model = build_model(config)
    layers = moe_layers(model)
    pointer = exp_dir / "checkpoints" / "latest"
    if not layers or not pointer.is_file():
        return None
    checkpoint = pointer.parent / pointer.read_text().strip()
    load_model_weights(model, load_checkpoint(checkpoint)["model"], checkpoint)
    counts = expert_counts(model)
    if not any(sum(row) for row in counts):
        return None
    plot_expert_heatmap(counts, exp_dir / HEATMAP)
    experts = len(counts[0])
    rows = [
        f"| {i} | `{name}` | {max(row) / max(sum(row), 1):.3f} | {min(row) / max(sum(row), 1):.3f} |"
        for i, ((name, _), row) in enumerate(zip(layers, counts))
    ]
    return "\n".join(
        [
            "## Expert load (MoE)",
            "",
            f"Share of the (frame, expert) assignments each expert received over all training steps, "
            f"from `{checkpoint.relative_to(exp_dir)}`; a uniform router gives {1 / experts:.3f} to each "
            f"of the {experts} experts.",
            "",
            f"![expert load]({HEATMAP})",
            "",
            "| layer | module | busiest expert | idlest expert |",
            "|---|---|---|---|",
            *rows,
        ]
    )
