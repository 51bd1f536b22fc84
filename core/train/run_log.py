"""What a run reports while it trains: ``EXP/train_log.jsonl`` records, tensorboard scalars
and the per-epoch progress bar. Only rank 0 writes; on the other ranks every call is a no-op.

``train_log.jsonl`` has one JSON object per line: step records (``epoch``, ``step``,
``elapsed``, ``lr``, ``audio_s_per_s``, ``train_<part>`` for each part of the forward output,
plus what ``after_train_step`` hooks return) every ``log_interval`` steps and at step 1, and
one validation record per epoch (``valid_<key>`` for each key of the forward output, with
``partial: true`` when a budget ended the epoch early). A kill or a full disk during an
append can leave a torn line: the next run's first append ends it, and
:func:`read_train_log` skips it with a warning naming the file and line.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger(__name__)


def read_train_log(exp_dir: Path) -> list[dict[str, Any]]:
    """The records of ``exp_dir/train_log.jsonl`` ([] without one); a line that is not a JSON
    object (torn by a kill mid-append) is skipped with a warning naming it."""
    path = Path(exp_dir) / "train_log.jsonl"
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        elif line.strip():
            log.warning("%s:%d: not a complete JSON record (torn by a kill or a full disk?), skipped", path, number)
    return records


def _ends_mid_line(f: BinaryIO) -> bool:
    if f.seek(0, os.SEEK_END) == 0:
        return False
    f.seek(-1, os.SEEK_END)
    return f.read(1) != b"\n"


class RunLog:
    """Writes one run's records; ``close`` it at the end."""

    def __init__(self, exp_dir: Path, is_main: bool, log_interval: int, progress_bar: bool) -> None:
        self.path = exp_dir / "train_log.jsonl"
        self.is_main = is_main
        self.log_interval = log_interval
        self.show_bar = is_main and progress_bar
        self.writer: Any = None
        self.bar: Any = None
        if is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(exp_dir / "tensorboard"))

    def start_epoch(self, epoch: int, total_steps: int) -> None:
        """Open the progress bar of epoch ``epoch`` (0-based) of ``total_steps`` steps."""
        if self.show_bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, desc=f"epoch {epoch + 1}", unit="step", dynamic_ncols=True, leave=False)

    def end_epoch(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def step(self, epoch: int, step: int, elapsed: float, lr: float, speed: float, losses: Mapping[str, float], extra: list[Mapping[str, float]]) -> None:
        """One optimizer step: the bar always, a record every ``log_interval`` steps and at
        step 1. ``speed`` is seconds of audio per second; ``extra`` the hooks' scalars."""
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{losses['loss']:.3f}", audio_s_per_s=f"{speed:.1f}", lr=f"{lr:.2e}")
        if step % self.log_interval and step != 1:
            return
        record = {"epoch": epoch, "step": step, "elapsed": round(elapsed, 2), "lr": lr, "audio_s_per_s": round(speed, 2)}
        record.update({f"train_{k}": round(v, 5) for k, v in losses.items()})
        for metrics in extra:
            record.update(metrics)
        self.record(record)
        if self.writer is not None:
            for key, value in record.items():
                if key not in ("epoch", "step") and isinstance(value, (int, float)):
                    self.writer.add_scalar(key.replace("train_", "train/"), value, step)

    def validation(self, epoch: int, step: int, elapsed: float, values: Mapping[str, float] | None, partial: bool = False) -> None:
        """The validation averages of epoch ``epoch`` (1-based), keyed by forward output name;
        None when there is no validation set (``valid_loss`` is then null)."""
        record: dict[str, Any] = {"epoch": epoch, "step": step, "elapsed": elapsed}
        record.update({f"valid_{k}": v for k, v in (values or {"loss": None}).items()})
        self.record({**record, "partial": True} if partial else record)
        if self.writer is not None and values is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"valid/{key}", value, step)

    def record(self, record: Mapping[str, Any]) -> None:
        """Append one record to ``train_log.jsonl``."""
        if self.is_main:
            with open(self.path, "a+b") as f:
                start = b"\n" if _ends_mid_line(f) else b""  # end a line torn by a kill
                f.write(start + json.dumps(record).encode() + b"\n")

    def close(self) -> None:
        self.end_epoch()
        if self.writer is not None:
            self.writer.close()
