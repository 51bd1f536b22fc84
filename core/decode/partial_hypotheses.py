"""Hypotheses appended as a decode goes, so a crash part-way keeps the finished utterances and
a rerun continues where it stopped.

``<out_dir>/hyp.partial`` holds ``<utt-id> <text>`` lines, one batch appended (and flushed) at
a time; ``decode`` writes the sorted ``hyp`` from it at the end and removes it. A line torn by
a kill (no final newline) is dropped on reading, since its text may be cut short.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


class PartialHypotheses:
    """The hypotheses one method has written so far for one data set and chunk setting."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, str] = read_partial(path)

    def append(self, hyps: Mapping[str, str]) -> None:
        """Add one batch's hypotheses (``utt_id -> text``) durably."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write("".join(f"{utt_id} {text}\n" for utt_id, text in hyps.items()))
            f.flush()
            os.fsync(f.fileno())
        self.done.update(hyps)

    def finish(self) -> None:
        """The final ``hyp`` is written: the partial file is no longer needed."""
        self.path.unlink(missing_ok=True)


def read_partial(path: Path) -> dict[str, str]:
    """``utt_id -> text`` of a partial file ({} without one); a torn last line is dropped."""
    if not path.is_file():
        return {}
    *complete, _torn_or_empty = path.read_text(encoding="utf-8", errors="replace").split("\n")
    done = {}
    for line in complete:
        utt_id, *text = line.split(" ", 1)
        if utt_id:
            done[utt_id] = text[0] if text else ""
    return done
