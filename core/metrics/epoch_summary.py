"""One row per epoch of ``train_log.jsonl``: the loss and every accuracy a loss reports, in
training and in validation, so ``report.md`` and ``speechforge curve`` can show a decoder
learning (WeNet logs its attention decoder's token accuracy the same way).

An accuracy is a loss's extra scalar named ``acc`` or ``acc_<x>`` (logged as
``<loss name>_acc``, e.g. ``attention_acc`` and ``attention_acc_r2l``), a share in [0, 1].
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_ACCURACY = re.compile(r"_acc(_|$)")
SPLITS = ("train", "valid")


def accuracy_keys(records: Sequence[dict[str, Any]]) -> list[str]:
    """The logged accuracies (without their ``train_`` / ``valid_`` prefix), in the order they
    first appear."""
    keys: list[str] = []
    for record in records:
        for name in record:
            split, _, key = name.partition("_")
            if split in SPLITS and _ACCURACY.search(key) and key not in keys:
                keys.append(key)
    return keys


def epoch_summaries(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per validated epoch, in order: ``epoch`` (1-based), ``step``, ``elapsed``, ``partial``,
    and for ``loss`` and each of :func:`accuracy_keys` ``train_<key>`` (the mean over that
    epoch's logged step records, None without any) and ``valid_<key>`` (None without a
    validation set). An epoch validated twice (a budget ended it early, a resume finished it)
    keeps its last validation."""
    keys = ["loss", *accuracy_keys(records)]
    validations = {r["epoch"]: r for r in records if "valid_loss" in r}
    rows = []
    for epoch, validation in sorted(validations.items()):
        steps = [r for r in records if "train_loss" in r and r.get("epoch") == epoch - 1]  # step records count epochs from 0
        row: dict[str, Any] = {
            "epoch": epoch,
            "step": validation.get("step", 0),
            "elapsed": validation.get("elapsed", 0.0),
            "partial": bool(validation.get("partial")),
        }
        for key in keys:
            values = [r[f"train_{key}"] for r in steps if r.get(f"train_{key}") is not None]
            row[f"train_{key}"] = sum(values) / len(values) if values else None
            row[f"valid_{key}"] = validation.get(f"valid_{key}")
        rows.append(row)
    return rows


def epoch_table(records: Sequence[dict[str, Any]]) -> str | None:
    """Markdown table of :func:`epoch_summaries` (accuracies in %), or None before the first
    validation."""
    rows = epoch_summaries(records)
    if not rows:
        return None
    accuracies = accuracy_keys(records)
    header = ["epoch", "step", "min", "train loss", "valid loss"]
    header += [f"{split} {key} %" for key in accuracies for split in SPLITS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for row in rows:
        cells = [f"{row['epoch']}{' (partial)' if row['partial'] else ''}", str(row["step"]), f"{row['elapsed'] / 60:.1f}"]
        cells += [_number(row[f"{split}_loss"], 1.0) for split in SPLITS]
        cells += [_number(row[f"{split}_{key}"], 100.0) for key in accuracies for split in SPLITS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _number(value: float | None, scale: float) -> str:
    return "—" if value is None else f"{value * scale:.2f}"
