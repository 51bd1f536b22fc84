"""Per-epoch summaries of ``train_log.jsonl``: training means over each epoch's logged steps
and the epoch's validation, for the loss and every accuracy a loss reports; the table in
``report.md`` and the accuracy panel beside the WER in ``curve``'s plot."""
from __future__ import annotations

import json
import random

import matplotlib.image
import pytest

from speechforge.metrics.epoch_summary import accuracy_keys, epoch_summaries, epoch_table
from speechforge.metrics.report import plot_wer_curve, write_report

ACCURACIES = ["attention_acc", "attention_acc_r2l"]


def training_log(epochs: int = 3, steps_per_epoch: int = 4) -> list[dict]:
    """Step records (epoch counted from 0) and one validation per epoch (from 1); epoch 2 is
    validated twice, first as a partial epoch (a budget ended it, a resume finished it)."""
    rng = random.Random(0)
    records, step = [], 0
    for epoch in range(epochs):
        for _ in range(steps_per_epoch):
            step += 1
            records.append({
                "epoch": epoch, "step": step, "elapsed": 10.0 * step, "lr": 1e-3, "audio_s_per_s": 5.0,
                "train_loss": rng.uniform(1, 9), "train_ctc": rng.uniform(1, 9), "train_ctc_accent": 0.5,
                **{f"train_{key}": rng.random() for key in ACCURACIES},
            })  # fmt: skip
            if epoch == 1 and step == 6:
                records.append({"epoch": 2, "step": step, "elapsed": 60.0, "valid_loss": 99.0, "valid_attention_acc": 0.01, "partial": True})
        records.append({
            "epoch": epoch + 1, "step": step, "elapsed": 10.0 * step + 5,
            "valid_loss": rng.uniform(1, 9), "valid_ctc": 1.0, **{f"valid_{key}": rng.random() for key in ACCURACIES},
        })  # fmt: skip
    return records


def test_accuracy_keys_are_the_acc_scalars_in_logged_order():
    assert accuracy_keys(training_log()) == ACCURACIES
    assert accuracy_keys([{"epoch": 1, "valid_loss": 1.0, "valid_rnnt_acc": 0.5, "train_moe_accuracy": 0.1}]) == ["rnnt_acc"]


def test_each_epoch_has_its_steps_mean_and_its_last_validation():
    records = training_log()
    rows = epoch_summaries(records)
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    for row in rows:
        steps = [r for r in records if "train_loss" in r and r["epoch"] == row["epoch"] - 1]
        (validation,) = [r for r in records if r.get("epoch") == row["epoch"] and "valid_loss" in r and not r.get("partial")]
        assert row["step"] == validation["step"] and row["elapsed"] == validation["elapsed"] and not row["partial"]
        for key in ["loss", *ACCURACIES]:
            assert row[f"train_{key}"] == pytest.approx(sum(r[f"train_{key}"] for r in steps) / len(steps))
            assert row[f"valid_{key}"] == validation[f"valid_{key}"]
        assert "train_ctc" not in row  # loss parts stay in loss.png


def test_an_epoch_ended_by_the_budget_is_marked_partial_and_a_missing_value_is_a_dash():
    records = training_log(epochs=1)[:-1] + [{"epoch": 1, "step": 4, "elapsed": 45.0, "valid_loss": None, "partial": True}]
    (row,) = epoch_summaries(records)
    assert row["partial"] and row["valid_loss"] is None and row["valid_attention_acc"] is None
    table = epoch_table(records).splitlines()
    assert table[0] == (
        "| epoch | step | min | train loss | valid loss | train attention_acc % | valid attention_acc % "
        "| train attention_acc_r2l % | valid attention_acc_r2l % |"
    )
    cells = [c.strip() for c in table[2].strip("|").split("|")]
    assert cells[:3] == ["1 (partial)", "4", "0.8"] and cells[4] == "—" and cells[6] == "—"
    assert float(cells[5]) == pytest.approx(100 * row["train_attention_acc"], abs=0.005)
    assert epoch_table([r for r in records if "valid_loss" not in r]) is None


def test_report_has_the_epoch_table(tmp_path):
    records = training_log()
    (tmp_path / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    report = write_report(tmp_path, "{}\n", 10, []).read_text()
    assert "## Training per epoch\n\n" + epoch_table(records) + "\n" in report
    assert len([line for line in report.splitlines() if line.startswith("| 3 |")]) == 1


def test_wer_curve_gets_an_accuracy_panel_only_with_accuracies(tmp_path):
    points = [{"epoch": 1, "elapsed": 60.0, "wer": 90.0, "cer": 50.0, "train_attention_acc": 0.2, "valid_attention_acc": None}]
    points.append({"epoch": 2, "elapsed": 120.0, "wer": 80.0, "cer": 40.0, "train_attention_acc": 0.3, "valid_attention_acc": 0.25})
    plot_wer_curve(points, tmp_path / "plain.png", "plain")
    plot_wer_curve(points, tmp_path / "both.png", "both", ["attention_acc"])
    plain, both = (matplotlib.image.imread(tmp_path / name) for name in ("plain.png", "both.png"))
    assert plain.shape[0] == both.shape[0] and both.shape[1] > 1.7 * plain.shape[1]
