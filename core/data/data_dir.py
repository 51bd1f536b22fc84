"""Kaldi/ESPnet-style data directories: ``wav.scp``, ``text``, ``utt2spk``, ``utt2dur``.

Every file is ``<utt-id> <value>`` per line, sorted by utterance id. Reading checks that the
files agree and names the file and line of any problem. Untranscribed audio (for tasks that
need no transcripts, and for CMVN) is a data dir of ``wav.scp`` and ``utt2dur`` only.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from speechforge.config import atomic_write_text
from speechforge.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Utterance:
    utt_id: str
    audio: str
    text: str
    speaker: str
    duration: float


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file; a byte sequence that is not UTF-8 is an error naming
    the file and line (a Latin-1 transcript, a binary file given as a table)."""
    lines = []
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise DataError(f"{path}:{number}: not UTF-8 (byte {raw[error.start]:#04x} at column {error.start + 1}); convert the file to UTF-8") from error
    return lines


def read_table(path: Path, allow_empty_values: bool = False) -> dict[str, str]:
    """``<key> <value>`` lines into a dict; the key ends at the first run of spaces or tabs,
    as in Kaldi. Duplicate keys and empty values are errors."""
    if not path.is_file():
        raise DataError(f"{path}: missing")
    table: dict[str, str] = {}
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        key, *rest = line.strip().split(None, 1)
        value = rest[0].strip() if rest else ""
        if not value and not allow_empty_values:
            raise DataError(f"{path}:{number}: utterance {key!r} has no value")
        if key in table:
            raise DataError(f"{path}:{number}: utterance {key!r} appears twice")
        table[key] = value
    return table


def write_table(path: Path, rows: Mapping[str, object]) -> None:
    atomic_write_text(path, "".join(f"{k} {rows[k]}\n" for k in sorted(rows)))


def write_data_dir(directory: Path, utterances: Iterable[Utterance]) -> int:
    """Write the four files of a data dir; returns the number of utterances."""
    utts = sorted(utterances, key=lambda u: u.utt_id)
    write_table(directory / "wav.scp", {u.utt_id: u.audio for u in utts})
    write_table(directory / "text", {u.utt_id: u.text for u in utts})
    write_table(directory / "utt2spk", {u.utt_id: u.speaker for u in utts})
    write_table(directory / "utt2dur", {u.utt_id: f"{u.duration:.3f}" for u in utts})
    return len(utts)


def read_data_dir(directory: Path, transcripts: bool = True) -> list[Utterance]:
    """All utterances of a data dir. Empty transcripts are kept (the dataset skips and counts
    them); utterances of ``text`` without audio are counted in a warning and left out;
    utterances of ``wav.scp`` missing from ``text``, ``utt2spk`` or ``utt2dur`` are errors naming the
    file. With ``transcripts=False`` only ``wav.scp`` and ``utt2dur`` are read; the
    utterances then have empty ``text`` and ``speaker``."""
    directory = Path(directory)
    wavs = read_table(directory / "wav.scp")
    tables = {"utt2dur": read_table(directory / "utt2dur")}
    if transcripts:
        tables["text"] = read_table(directory / "text", allow_empty_values=True)
        tables["utt2spk"] = read_table(directory / "utt2spk")
    if transcripts and (orphans := sorted(set(tables["text"]) - set(wavs))):
        log.warning("%s: %d utterances have no audio in wav.scp and are left out (first: %s)", directory / "text", len(orphans), ", ".join(orphans[:3]))
    utterances = []
    for utt_id, audio in wavs.items():
        for name, table in tables.items():
            if utt_id not in table:
                raise DataError(f"{directory / name}: no entry for utterance {utt_id!r} of wav.scp")
        durations = tables["utt2dur"]
        try:
            duration = float(durations[utt_id])
        except ValueError as error:
            raise DataError(f"{directory / 'utt2dur'}: {utt_id}: not a number: {durations[utt_id]!r}") from error
        text, speaker = (tables["text"][utt_id], tables["utt2spk"][utt_id]) if transcripts else ("", "")
        utterances.append(Utterance(utt_id, audio, text, speaker, duration))
    return utterances
