"""Rendering utterances to flac files, in this process or in a pool of spawned workers.

Each worker process holds one eSpeak engine. An utterance's audio depends only on its own
``audio_seed``, so the output is the same for any number of workers and any order of work.
"""

from __future__ import annotations

import io
import multiprocessing
import signal
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from .audio import SAMPLE_RATE, finish_audio
from .espeak import ESpeakEngine
from .plan import Utterance
from .writer import write_atomic

_ENGINE: ESpeakEngine | None = None


def _init_worker() -> None:
    """One engine per process."""
    global _ENGINE
    _ENGINE = ESpeakEngine()


def _init_pool_worker() -> None:
    """Pool initialiser: Ctrl-C is left to the parent, which then stops the whole pool."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _init_worker()


def render_utterance(task: tuple[Utterance, str]) -> tuple[str, int]:
    """Synthesise one utterance and write its flac; returns (utt_id, samples)."""
    utt, root = task
    if _ENGINE is None:
        raise RuntimeError("render_utterance needs _init_worker() first")
    rng = np.random.default_rng(list(utt.audio_seed))
    pcm = _ENGINE.synthesize(utt, int(rng.integers(1, 2**31 - 1)))
    audio = finish_audio(pcm, _ENGINE.sample_rate, rng)
    buffer = io.BytesIO()
    sf.write(buffer, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    write_atomic(Path(root) / utt.relpath, buffer.getvalue())
    return utt.utt_id, len(audio)


class Renderer:
    """Runs render_utterance in this process (jobs=1) or in a pool of spawned workers."""

    def __init__(self, jobs: int) -> None:
        self._pool = None
        if jobs > 1:
            self._pool = multiprocessing.get_context("spawn").Pool(
                jobs, initializer=_init_pool_worker)
        elif _ENGINE is None:
            _init_worker()

    def map(self, tasks: list[tuple[Utterance, str]]) -> Iterator[tuple[str, int]]:
        """(utt_id, samples) per task, in any order."""
        if self._pool is None:
            return map(render_utterance, tasks)
        return self._pool.imap_unordered(render_utterance, tasks, chunksize=4)

    def close(self) -> None:
        """Stop the workers; any still busy were abandoned by an error or an interrupt."""
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
