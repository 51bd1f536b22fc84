"""Making a corpus: plan it, render what is missing, write its index; resume or skip finished work.

The settings that change the output (seed and sizes, plus FORMAT_VERSION) are stored with the
corpus; ``--jobs`` is not among them because it never changes a byte.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import soundfile as sf

from .audio import SAMPLE_RATE
from .espeak import check_voices
from .grammar import SentenceGenerator
from .plan import SPLITS, Chapter, build_plan
from .render import Renderer
from .voices import every_voice
from .writer import finished_splits, mark_complete, prepare_root, write_metadata, write_transcripts

FORMAT_VERSION = 1  # bump when a change alters the generated audio or text


def generate(args: argparse.Namespace) -> None:
    """Plan, render and index the corpus; resume or skip work a previous run already did."""
    root = Path(args.out) / "LibriSpeech"
    params = {"format_version": FORMAT_VERSION, "seed": args.seed, "train_utts": args.train_utts,
              "dev_utts": args.dev_utts, "test_utts": args.test_utts,
              "train_speakers": args.train_speakers, "eval_speakers": args.eval_speakers}
    done = finished_splits(root, params)
    if done is not None:
        for split in SPLITS:
            print(_summary_line(split, done[split], None))
        return
    prepare_root(root, params, args.overwrite)
    check_voices(every_voice())
    plan = build_plan(params, SentenceGenerator())
    samples: dict[str, int] = {}
    splits: dict[str, dict] = {}
    renderer = Renderer(args.jobs)
    try:
        for split, chapters in plan.items():
            start = time.monotonic()
            tasks = []
            for chapter in chapters:
                (root / chapter.relpath).mkdir(parents=True, exist_ok=True)
                for utt in chapter.utterances:
                    flac = root / utt.relpath
                    if flac.is_file():  # left by an interrupted run with the same settings
                        samples[utt.utt_id] = sf.info(str(flac)).frames
                    else:
                        tasks.append((utt, str(root)))
            samples.update(renderer.map(tasks))
            for chapter in chapters:
                write_transcripts(root, chapter)
            splits[split] = _split_stats(chapters, samples)
            print(_summary_line(split, splits[split], time.monotonic() - start), flush=True)
    finally:
        renderer.close()
    write_metadata(root, plan, samples)
    mark_complete(root, params, splits)


def _split_stats(chapters: list[Chapter], samples: dict[str, int]) -> dict:
    """What ``.complete`` records about one split (and the summary line prints)."""
    seconds = [samples[u.utt_id] / SAMPLE_RATE for c in chapters for u in c.utterances]
    return {
        "utterances": len(seconds), "hours": round(sum(seconds) / 3600, 4),
        "speakers": len({c.speaker.speaker_id for c in chapters}),
        "chapters": len(chapters),
        "min_seconds": round(min(seconds), 2), "max_seconds": round(max(seconds), 2),
        "words": len({w for c in chapters for u in c.utterances for w in u.transcript.split()}),
        "voices": sorted({c.speaker.voice for c in chapters}),
    }


def _summary_line(split: str, stats: dict, seconds: float | None) -> str:
    took = f"generated in {seconds:.1f} s" if seconds is not None else "already complete"
    return (f"{split}: {stats['utterances']} utterances, {stats['hours']:.3f} h, "
            f"{stats['speakers']} speakers, {stats['chapters']} chapters, "
            f"{stats['min_seconds']:.1f}-{stats['max_seconds']:.1f} s each, {took}")
