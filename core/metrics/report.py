"""``report.md`` of an experiment: WER table, parameters, training time, RTF, a table of
epochs (loss and every accuracy a loss reports, training and validation), loss and
WER-versus-time plots (with those accuracies beside the WER), the config, and sections
plugins add."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

from speechforge.metrics.epoch_summary import SPLITS, epoch_table
from speechforge.train.run_log import read_train_log

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_log(exp_dir: Path) -> list[dict[str, Any]]:
    """The run's ``train_log.jsonl`` records; a torn line is skipped with a warning."""
    return read_train_log(exp_dir)


def plot_losses(records: Sequence[dict[str, Any]], path: Path) -> bool:
    """Training loss per logged step and validation loss per epoch, against training time."""
    train = [(r["elapsed"] / 60, r["train_loss"]) for r in records if "train_loss" in r]
    valid = [(r["elapsed"] / 60, r["valid_loss"]) for r in records if r.get("valid_loss") is not None]
    if not train:
        return False
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(*zip(*train), label="train loss", linewidth=1)
    if valid:
        ax.plot(*zip(*valid), "o-", label="validation loss")
    ax.set_xlabel("training time (min)")
    ax.set_ylabel("loss per utterance")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_wer_curve(points: Sequence[dict[str, Any]], path: Path, title: str, accuracies: Sequence[str] = ()) -> None:
    """WER and CER of each point against training time; with ``accuracies`` (keys of the
    points without their ``train_`` / ``valid_`` prefix, shares in [0, 1]) a second panel
    beside it plots them in %, training dashed and validation solid."""
    minutes = [p["elapsed"] / 60 for p in points]
    fig, axes = plt.subplots(1, 2 if accuracies else 1, figsize=(11 if accuracies else 6, 3.5), squeeze=False)
    ax = axes[0, 0]
    ax.plot(minutes, [p["wer"] for p in points], "o-", label="WER")
    ax.plot(minutes, [p["cer"] for p in points], "s--", label="CER")
    ax.set_xlabel("training time (min)")
    ax.set_ylabel("error rate (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    if accuracies:
        ax = axes[0, 1]
        for key in accuracies:
            for split, style in zip(SPLITS, ("x--", "o-")):
                shown = [(m, 100 * p[f"{split}_{key}"]) for m, p in zip(minutes, points) if p.get(f"{split}_{key}") is not None]
                if shown:
                    ax.plot(*zip(*shown), style, label=f"{split} {key}")
        ax.set_xlabel("training time (min)")
        ax.set_ylabel("teacher-forced accuracy (%)")
        ax.set_title("token accuracy per epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def results_table(results: Sequence[dict[str, Any]]) -> str:
    lines = ["| set | method | WER % | CER % | utts | RTF |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['set']} | {r['method']} | {r['wer']:.2f} | {r['cer']:.2f} | {r['num_utts']} | {r['rtf']:.4f} |" for r in results]
    return "\n".join(lines)


def write_report(exp_dir: Path, config_yaml: str, num_params: int, extra_sections: Sequence[str]) -> Path:
    records = read_log(exp_dir)
    results_path = exp_dir / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else []
    steps = max((r.get("step", 0) for r in records), default=0)
    minutes = max((r.get("elapsed", 0.0) for r in records), default=0.0) / 60
    epochs = max((r.get("epoch", 0) for r in records if "valid_loss" in r), default=0)
    parts = [
        f"# {exp_dir.name}",
        "",
        f"- parameters: {num_params:,}",
        f"- training: {steps} steps, {epochs} epochs, {minutes:.1f} min of training (wall clock, validation included)",
        "",
        "## Results",
        "",
        results_table(results) if results else "(nothing scored yet)",
    ]
    epochs_md = epoch_table(records)
    if epochs_md:
        parts += ["", "## Training per epoch", "", epochs_md]
    if plot_losses(records, exp_dir / "loss.png"):
        parts += ["", "## Loss", "", "![loss curves](loss.png)"]
    curve = exp_dir / "wer_curve.json"
    if curve.is_file():
        parts += ["", "## WER during training", "", "![WER versus training time](wer_curve.png)"]
    parts += list(extra_sections)
    parts += ["", "## Config", "", "```yaml", config_yaml.rstrip(), "```", ""]
    path = exp_dir / "report.md"
    path.write_text("\n".join(parts))
    return path
