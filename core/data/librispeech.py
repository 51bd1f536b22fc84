"""LibriSpeech layout (``<split>/<spk>/<chapter>/*.flac`` + ``*.trans.txt``) to data dirs.

The same code serves the real corpus and the embedded synthetic one, which is written in the
exact same layout.
"""
from __future__ import annotations

import logging
from pathlib import Path

from speechforge.data.audio import audio_duration
from speechforge.data.data_dir import Utterance, write_data_dir
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
    for trans in transcripts:
        for number, line in enumerate(trans.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            utt_id, _, text = line.strip().partition(" ")
            audio = trans.parent / f"{utt_id}.flac"
            if not audio.is_file():
                raise DataError(f"{trans}:{number}: {audio.name} does not exist")
            speaker = utt_id.split("-")[0]
            utterances.append(Utterance(utt_id, str(audio.resolve()), text.strip(), speaker, audio_duration(audio)))
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
