"""The LibriSpeech tree on disk: transcripts, SPEAKERS/CHAPTERS/README, settings, completion.

Every file is written to a temporary name and renamed, and ``OUT/LibriSpeech/.complete`` is
written last: a killed run leaves no half files and resumes where it stopped; a finished one is
skipped. A directory holds one corpus: other settings are refused unless ``--overwrite``, and
nothing this tool did not write is ever deleted.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .audio import SAMPLE_RATE
from .errors import SynthError
from .plan import SPLITS, Chapter
from .voices import Speaker

PARAMS_FILE = ".synth_params.json"
COMPLETE_FILE = ".complete"


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a hidden temporary name, then rename, so no reader ever sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def finished_splits(root: Path, params: dict) -> dict[str, dict] | None:
    """The per-split statistics of a corpus already complete in ``root`` with ``params``."""
    complete_path = root / COMPLETE_FILE
    if complete_path.is_file():
        done = json.loads(complete_path.read_text())
        if done["params"] == params:
            return done["splits"]
    return None


def prepare_root(root: Path, params: dict, overwrite: bool) -> None:
    """Refuse to mix settings in one directory; never delete anything this tool did not write."""
    params_path = root / PARAMS_FILE
    if root.is_dir() and any(root.iterdir()):
        if not params_path.is_file():
            raise SynthError(f"{root} exists and was not written by this tool; "
                             "choose another --out")
        old = json.loads(params_path.read_text())
        if old != params:
            if not overwrite:
                changed = sorted(k for k in set(old) | set(params) if old.get(k) != params.get(k))
                raise SynthError(f"{root} holds a corpus made with other settings "
                                 f"({', '.join(changed)}); pass --overwrite to replace it "
                                 "or choose another --out")
            for split in SPLITS:
                shutil.rmtree(root / split, ignore_errors=True)
            for name in (COMPLETE_FILE, "SPEAKERS.TXT", "CHAPTERS.TXT", "README.TXT"):
                (root / name).unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.rglob(".*.tmp"):
        stale.unlink()
    write_atomic(params_path, (json.dumps(params, indent=1, sort_keys=True) + "\n").encode())


def write_transcripts(root: Path, chapter: Chapter) -> None:
    """``<spk>-<chapter>.trans.txt``: one "utt_id TRANSCRIPT" line per utterance, in order."""
    stem = f"{chapter.speaker.speaker_id}-{chapter.chapter_id}"
    lines = "".join(f"{u.utt_id} {u.transcript}\n" for u in chapter.utterances)
    write_atomic(root / chapter.relpath / f"{stem}.trans.txt", lines.encode())


def write_metadata(root: Path, plan: dict[str, list[Chapter]], samples: dict[str, int]) -> None:
    """SPEAKERS.TXT / CHAPTERS.TXT in LibriSpeech's format, plus a README saying what this is."""
    speakers = [";ID  |SEX| SUBSET           |MINUTES| NAME"]
    chapters = [";ID    |READER|MINUTES| SUBSET           | PROJ.|BOOK ID| CH. TITLE "
                "| PROJECT TITLE"]
    for split, split_chapters in plan.items():
        minutes: dict[Speaker, float] = {}
        for chapter in split_chapters:
            chapter_minutes = sum(samples[u.utt_id] for u in chapter.utterances) / SAMPLE_RATE / 60
            minutes[chapter.speaker] = minutes.get(chapter.speaker, 0.0) + chapter_minutes
            chapters.append(f"{chapter.chapter_id:<7}| {chapter.speaker.speaker_id:<5}| "
                            f"{chapter_minutes:5.2f} | {split:<17}| 0    | 0     | "
                            f"synthetic chapter | synthetic")
        for speaker, total in minutes.items():
            name = f"eSpeak {speaker.voice} pitch {speaker.pitch} rate {speaker.rate}"
            speakers.append(f"{speaker.speaker_id:<5}| {speaker.gender} | {split:<17}| "
                            f"{total:5.2f} | {name}")
    # Names the single-file script this package was split from, so corpora stay byte-identical.
    readme = ("Synthetic speech in the LibriSpeech layout, made by tools/synth_librispeech.py "
              "(speechforge) with eSpeak NG from self-written text. Not real read speech.\n")
    write_atomic(root / "SPEAKERS.TXT", ("\n".join(speakers) + "\n").encode())
    write_atomic(root / "CHAPTERS.TXT", ("\n".join(chapters) + "\n").encode())
    write_atomic(root / "README.TXT", readme.encode())


def mark_complete(root: Path, params: dict, splits: dict[str, dict]) -> None:
    """Write ``.complete`` (settings and per-split statistics), last of all."""
    write_atomic(root / COMPLETE_FILE, (json.dumps({"params": params, "splits": splits}, indent=1,
                                                   sort_keys=True) + "\n").encode())
