"""LibriSpeech layout (``<split>/<spk>/<chapter>/*.flac`` + ``*.trans.txt``) to data dirs.

The same code serves the real corpus and the embedded synthetic one, which is written in the
exact same layout.
"""
from __future__ import annotations

import logging
from pathlib import Path

from speechforge.data.audio import audio_duration
from speechforge.data.data_dir import Utterance, read_lines, write_data_dir
from speechforge.errors import DataError

log = logging.getLogger(__name__)


def find_split(root: Path, split: str) -> Path:
    """``root/<split>`` or ``root/LibriSpeech/<split>``, whichever exists."""
    for candidate in (root / split, root / "LibriSpeech" / split):
        if candidate.is_dir():
            return candidate
    raise DataError(f"{root}: no LibriSpeech split {split!r} (looked for {root / split} and {root / 'LibriSpeech' / split})")


def read_split(split_dir: Path) -> list[Utterance]:
    """Every utterance of a split, with its duration read from the FLAC header."""
    utterances = []
    transcripts = sorted(split_dir.glob("*/*/*.trans.txt"))
    if not transcripts:
        raise DataError(f"{split_dir}: no */*/*.trans.txt transcript files")
    unreadable = []
    for trans in transcripts:
        for number, line in enumerate(read_lines(trans), start=1):
            if not line.strip():
                continue
            utt_id, *rest = line.strip().split(None, 1)
            audio = trans.parent / f"{utt_id}.flac"
            if not audio.is_file():
                raise DataError(f"{trans}:{number}: {audio.name} does not exist")
            try:
                duration = audio_duration(audio)
            except DataError as error:  # one damaged file costs that utterance, not the split
                unreadable.append(str(error))
                continue
            speaker = utt_id.split("-")[0]
            utterances.append(Utterance(utt_id, str(audio.resolve()), rest[0].strip() if rest else "", speaker, duration))
    if unreadable:
        log.warning("%s: skipped %d unreadable FLAC files: %s", split_dir, len(unreadable), "; ".join(unreadable[:3]))
    return utterances


def prepare_librispeech(root: Path, splits: list[str], out_dir: Path) -> dict[str, int]:
    """Write ``out_dir/<split>/{wav.scp,text,utt2spk,utt2dur}``; returns utterances per split."""
    counts = {}
    for split in splits:
        utterances = read_split(find_split(root, split))
        counts[split] = write_data_dir(out_dir / split, utterances)
        hours = sum(u.duration for u in utterances) / 3600
        log.info("prepared %s: %d utterances, %.2f h", split, counts[split], hours)
    return counts
