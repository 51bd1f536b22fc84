"""Generate a synthetic English speech corpus in the exact LibriSpeech layout, with no download.

Usage example (about 7.5 hours of training speech in about two minutes on two cores)::

    python tools/synth_librispeech --out data/synth --seed 0 --jobs 2

    # tiny corpus for a smoke test
    python tools/synth_librispeech --out /tmp/tiny --train-utts 20 --dev-utts 5 --test-utts 5

(``python -m synth_librispeech ...`` works too with ``tools/`` on ``PYTHONPATH``.)

The result is ``OUT/LibriSpeech/{train-clean-100,dev-clean,test-clean}/<spk>/<chapter>/`` holding
``<spk>-<chapter>-<NNNN>.flac`` (16 kHz mono, 16 bit) and ``<spk>-<chapter>.trans.txt``, so any
LibriSpeech data preparation reads it unchanged. Output depends only on the seed and the size
flags, never on ``--jobs`` or the order of work.

One module per job, each depending only on those above it:

* ``errors``: SynthError, the one-line error a user can act on.
* ``draws``: random draws that are stable across Python versions, one stream per purpose.
* ``lexicon`` and ``grammar``: the self-written text material and the sentences drawn from it.
* ``voices``: eSpeak voice variants and accents, and the synthetic speakers made of them.
* ``plan``: who says what under which ids, built from the seed before any audio.
* ``espeak``: the eSpeak NG binding (ctypes, one forked engine copy per utterance).
* ``audio``: resampling to 16 kHz, trimming, level and noise.
* ``writer``: the LibriSpeech tree on disk, atomic files and resumable runs.
* ``render``: utterances to flac files, in this process or a pool of workers.
* ``corpus``: ``generate``, which plans, renders and writes a corpus.
* ``cli``: the command line.

Linux and macOS only (the per-utterance engine copy uses ``os.fork``).
"""

from __future__ import annotations

from .audio import SAMPLE_RATE, finish_audio, resample
from .cli import main, parse_args
from .corpus import FORMAT_VERSION, generate
from .errors import SynthError
from .espeak import ESpeakEngine, check_voices
from .grammar import TEXT_DIR, Sentence, SentenceGenerator
from .lexicon import load_lexicon
from .plan import SPLITS, Chapter, Utterance, build_plan
from .render import Renderer, render_utterance
from .voices import ACCENTS, VOICE_VARIANTS, Speaker

__all__ = [
    "ACCENTS", "FORMAT_VERSION", "SAMPLE_RATE", "SPLITS", "TEXT_DIR", "VOICE_VARIANTS",
    "Chapter", "ESpeakEngine", "Renderer", "Sentence", "SentenceGenerator", "Speaker",
    "SynthError", "Utterance", "build_plan", "check_voices", "finish_audio", "generate",
    "load_lexicon", "main", "parse_args", "render_utterance", "resample",
]
