"""Expert-load reporting: step metrics through the ``after_train_step`` hook, totals for the
report, and the heatmap PNG."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from speechforge.builder import build_model
from speechforge.interfaces import Progress
from speechforge.plugins import default_host
from speechforge.registry import build_component
from speechforge_plugins.moe.expert_load import expert_counts, plot_expert_heatmap, step_load_metrics
from speechforge_plugins.moe.moe_feed_forward import MoEFeedForward

D = 8


def moe(**kwargs) -> MoEFeedForward:
    return build_component("ffn", {"type": "moe", "hidden": 12, "dropout": 0.0, **kwargs}, "ffn", d_model=D)


def test_step_metrics_report_each_layer_then_reset():
    model = nn.Sequential(moe(num_experts=4, top_k=2), moe(num_experts=4, top_k=1, capacity_factor=1.0))
    x = torch.randn(2, 10, D)
    model(x)
    routed = [m._counts[0].tolist() for m in model]
    dropped = model[1]._counts[1].tolist()
    metrics = step_load_metrics(model)
    assert metrics == {
        "moe/layer0/max_load_frac": max(routed[0]) / 40,
        "moe/layer0/min_load_frac": min(routed[0]) / 40,
        "moe/layer1/max_load_frac": max(routed[1]) / 20,
        "moe/layer1/min_load_frac": min(routed[1]) / 20,
        "moe/layer1/dropped_frac": sum(dropped) / 20,
    }
    assert all(m.router_state is None for m in model)
    assert step_load_metrics(model) == {}  # nothing routed since
    assert expert_counts(model) == routed


def test_after_train_step_hook_is_called_through_the_plugin_manager(tiny_config):
    tiny_config["encoder"]["ffn"] = {"type": "moe", "num_experts": 3, "top_k": 1, "hidden": 16}
    model = build_model(tiny_config).train()
    model.encoder(torch.randn(2, 50, 40), torch.tensor([50, 50]))
    progress = Progress(step=1, epoch=0, total_steps=10, fraction=0.1)
    answers = default_host().hook.after_train_step(model=model, step=1, losses={"loss": 1.0}, progress=progress)
    moe_answer = next(a for a in answers if any(k.startswith("moe/") for k in a))
    assert sorted(moe_answer) == [f"moe/layer{i}/{m}_load_frac" for i in range(4) for m in ("max", "min")]
    assert all(1 / 3 <= moe_answer[f"moe/layer{i}/max_load_frac"] <= 1 for i in range(4))


def test_hook_answers_none_for_a_dense_model(tiny_config):
    from speechforge_plugins.moe import after_train_step

    assert after_train_step(model=build_model(tiny_config), step=1, losses={}) is None


def test_heatmap_is_a_png(tmp_path):
    path = plot_expert_heatmap([[10, 0, 5], [1, 1, 1]], tmp_path / "report" / "experts.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_heatmap_rejects_ragged_counts(tmp_path):
    with pytest.raises(ValueError, match=r"row lengths \[2, 3\]"):
        plot_expert_heatmap([[1, 2, 3], [1, 2]], tmp_path / "x.png")


def _trained_moe_exp(tmp_path, tiny_config):
    """An experiment dir whose ``checkpoints/latest`` holds a MoE model after one forward."""
    from speechforge.train.checkpoint import save_checkpoint

    tiny_config["encoder"]["ffn"] = {"type": "moe", "num_experts": 3, "top_k": 2, "hidden": 16}
    model = build_model(tiny_config).train()
    model.encoder(torch.randn(2, 50, 40), torch.tensor([50, 30]))
    save_checkpoint({"model": model.state_dict()}, tmp_path / "checkpoints" / "step_1.pt")
    (tmp_path / "checkpoints" / "latest").write_text("step_1.pt\n")
    return expert_counts(model)


def test_report_section_reads_the_totals_of_the_latest_checkpoint(tmp_path, tiny_config):
    from speechforge_plugins.moe.report import HEATMAP, expert_load_section

    counts = _trained_moe_exp(tmp_path, tiny_config)
    section = expert_load_section(tmp_path, tiny_config)
    assert section.startswith("## Expert load (MoE)")
    assert (tmp_path / HEATMAP).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`" in line]
    assert len(rows) == len(counts) == 4  # two FFNs in each of two blocks
    for row, layer_counts in zip(rows, counts):
        busiest, idlest = (float(cell) for cell in row.strip("|").split("|")[2:])
        assert busiest == round(max(layer_counts) / sum(layer_counts), 3)
        assert idlest == round(min(layer_counts) / sum(layer_counts), 3)


def test_report_hook_of_the_loaded_plugin_gives_the_section(tmp_path, tiny_config):
    _trained_moe_exp(tmp_path, tiny_config)
    answers = default_host().hook.report_sections(exp_dir=tmp_path, config=tiny_config)
    assert [s.splitlines()[0] for answer in answers for s in answer] == ["## Expert load (MoE)"]


def test_report_hook_says_nothing_for_dense_or_untrained_models(tmp_path, tiny_config):
    answers = default_host().hook.report_sections(exp_dir=tmp_path, config=tiny_config)
    assert not any("Expert load" in s for answer in answers for s in answer)
    tiny_config["encoder"]["ffn"] = {"type": "moe", "num_experts": 3, "top_k": 2, "hidden": 16}
    answers = default_host().hook.report_sections(exp_dir=tmp_path, config=tiny_config)  # no checkpoint yet
    assert not any("Expert load" in s for answer in answers for s in answer)
