"""Generate a synthetic English speech corpus in the exact LibriSpeech layout, with no download.

Usage example (about 7.5 hours of training speech in about two minutes on two cores)::

    python tools/synth_librispeech.py --out data/synth --seed 0 --jobs 2

    # tiny corpus for a smoke test
    python tools/synth_librispeech.py --out /tmp/tiny --train-utts 20 --dev-utts 5 --test-utts 5

The result is ``OUT/LibriSpeech/{train-clean-100,dev-clean,test-clean}/<spk>/<chapter>/`` holding
``<spk>-<chapter>-<NNNN>.flac`` (16 kHz mono, 16 bit) and ``<spk>-<chapter>.trans.txt``, so any
LibriSpeech data preparation reads it unchanged.

Why it is built this way:

* Sentences come from a small self-written grammar (``tools/synthetic_text``), so the material is
  free of copyright and has a few thousand distinct words. Dev and test sentences are drawn first
  and train never repeats one of them, so held-out WER measures generalisation, not recall.
* Speech is eSpeak NG (``pip install espeakng-loader`` ships the library and its voice data),
  driven through ctypes in synchronous mode. A "speaker" is a voice variant with its own accent,
  pitch, pitch range and rate; dev and test use variants that train never hears.
* eSpeak keeps hidden state between utterances (pitch flutter, filter memories), so every
  utterance is rendered in a freshly forked copy of an engine that has never spoken. Output then
  depends only on the seed and the size flags, never on ``--jobs`` or the order of work.
* Files are written to a temporary name and renamed, and ``OUT/LibriSpeech/.complete`` is written
  last: a killed run leaves no half files and resumes where it stopped; a finished one is skipped.

Linux and macOS only (the per-utterance engine copy uses ``os.fork``).
"""

from __future__ import annotations

import argparse
import bisect
import ctypes
import io
import json
import math
import multiprocessing
import os
import random
import re
import shutil
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence, TypeVar

import numpy as np
import soundfile as sf

TEXT_DIR = Path(__file__).resolve().parent / "synthetic_text"
SPLITS = ("train-clean-100", "dev-clean", "test-clean")
SAMPLE_RATE = 16000
MAX_CHAPTER_UTTS = 50  # LibriSpeech chapters hold about fifty utterances
MIN_WORDS, MAX_WORDS = 5, 15
FORMAT_VERSION = 1  # bump when a change alters the generated audio or text
PARAMS_FILE = ".synth_params.json"
COMPLETE_FILE = ".complete"

# eSpeak voice variants (voices/!v in the eSpeak data) with the gender LibriSpeech records.
# The three sets are disjoint so that dev and test voices are never heard in training.
VOICE_VARIANTS: dict[str, tuple[tuple[str, str], ...]] = {
    "train-clean-100": (
        ("m1", "M"), ("m2", "M"), ("m4", "M"), ("m6", "M"), ("m7", "M"), ("klatt", "M"),
        ("klatt3", "M"), ("klatt6", "M"), ("Alex", "M"), ("Andy", "M"), ("david", "M"),
        ("edward", "M"), ("michel", "M"), ("norbert", "M"), ("paul", "M"), ("travis", "M"),
        ("f1", "F"), ("f3", "F"), ("f5", "F"), ("Annie", "F"), ("aunty", "F"), ("linda", "F"),
        ("steph", "F"), ("shelby", "F"),
    ),
    "dev-clean": (
        ("m3", "M"), ("klatt2", "M"), ("Mike", "M"), ("Denis", "M"), ("iven3", "M"),
        ("f2", "F"), ("belinda", "F"), ("anika", "F"),
    ),
    "test-clean": (
        ("m5", "M"), ("m8", "M"), ("klatt4", "M"), ("robert", "M"), ("quincy", "M"),
        ("f4", "F"), ("Alicia", "F"), ("grandma", "F"),
    ),
}
# English accents (eSpeak language names) with drawing weights; LibriSpeech is mostly American.
ACCENTS: tuple[tuple[str, int], ...] = (
    ("en-us", 5), ("en", 3), ("en-gb-x-rp", 1), ("en-gb-scotland", 1), ("en-us-nyc", 1),
    ("en-029", 1), ("en-gb-x-gbclan", 1), ("en-gb-x-gbcwmd", 1),
)

# eSpeak NG C API constants (speak_lib.h).
AUDIO_OUTPUT_SYNCHRONOUS = 2
ESPEAK_INITIALIZE_DONT_EXIT = 0x8000
ESPEAK_CHARS_UTF8 = 1
POS_CHARACTER = 1
ESPEAK_RATE, ESPEAK_VOLUME, ESPEAK_PITCH, ESPEAK_RANGE = 1, 2, 3, 4
ESPEAK_SAFE_VOLUME = 40  # eSpeak volume (default 100) at which no variant clips internally
SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class SynthError(RuntimeError):
    """A problem the user can act on; reported as one line, without a traceback."""


# --------------------------------------------------------------------------------------------
# Deterministic choices. Only Random.random() is guaranteed stable across Python versions, so
# every draw goes through it.


def _below(rng: random.Random, n: int) -> int:
    return int(rng.random() * n)


T = TypeVar("T")


def _pick(rng: random.Random, items: Sequence[T]) -> T:
    return items[_below(rng, len(items))]


def _uniform(rng: random.Random, low: float, high: float) -> float:
    return low + (high - low) * rng.random()


def _shuffled(rng: random.Random, items: Sequence[T]) -> list[T]:
    out = list(items)
    for i in range(len(out) - 1, 0, -1):
        j = _below(rng, i + 1)
        out[i], out[j] = out[j], out[i]
    return out


def _stream(seed: int, purpose: str) -> random.Random:
    """An independent random stream per purpose, so e.g. the train size never shifts test text."""
    return random.Random(f"speechforge-synth/{seed}/{purpose}")


# --------------------------------------------------------------------------------------------
# Text: lexicon + weighted grammar.

_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_PUNCT = {",", ".", "?"}
_RULE_LINE = re.compile(r"([A-Z][A-Z_]+)\s*(\d+)?\s*=\s*(.+)")
_RULE_NAME = re.compile(r"[A-Z][A-Z_]+")
_LEXICAL = re.compile(r"\{([a-z_]+)(?::([a-z]+))?\}")
_VERB_FORMS = ("base", "past", "pp", "ing", "s")
# Spellings whose first letter misleads the a/an choice.
_VOWEL_LETTER_CONSONANT_SOUND = ("uni", "use", "usu", "uti", "eu", "one", "once")
_CONSONANT_LETTER_VOWEL_SOUND = ("hour", "honest", "honor", "heir")


def _entries(path: Path) -> list[str]:
    """Comma-separated entries of a word file; '#' starts a comment."""
    entries: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        entries += [e.strip() for e in line.split("#", 1)[0].split(",") if e.strip()]
    if not entries:
        raise SynthError(f"{path}: no entries")
    duplicates = sorted({e for e in entries if entries.count(e) > 1})
    if duplicates:
        raise SynthError(f"{path}: duplicate entries {duplicates}")
    return entries


def _plural(noun: str) -> str:
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def _verb_forms(entry: str) -> dict[str, str]:
    """Inflect 'base [past [pp]] [ing=X] [s=X]'; regular forms follow English spelling rules."""
    words = [w for w in entry.split() if "=" not in w]
    overrides = dict(w.split("=", 1) for w in entry.split() if "=" in w)
    if not 1 <= len(words) <= 3 or set(overrides) - {"ing", "s"}:
        raise SynthError(f"bad verb entry {entry!r}: expected 'base [past [pp]] [ing=X] [s=X]'")
    base = words[0]
    if len(words) > 1:
        past = words[1]
    elif base.endswith("e"):
        past = base + "d"
    elif base.endswith("y") and base[-2] not in "aeiou":
        past = base[:-1] + "ied"
    else:
        past = base + "ed"
    if past == base + base[-1] + "ed":  # stop -> stopped -> stopping
        ing = base + base[-1] + "ing"
    elif base.endswith("ie"):
        ing = base[:-2] + "ying"
    elif base.endswith(("ee", "ye", "oe")) or not base.endswith("e"):
        ing = base + "ing"
    else:
        ing = base[:-1] + "ing"
    if base.endswith(("s", "x", "z", "ch", "sh", "o")):
        third = base + "es"
    elif base.endswith("y") and base[-2] not in "aeiou":
        third = base[:-1] + "ies"
    else:
        third = base + "s"
    return {"base": base, "past": past, "pp": words[2] if len(words) > 2 else past,
            "ing": overrides.get("ing", ing), "s": overrides.get("s", third)}


def load_lexicon(text_dir: Path) -> dict[str, list[str]]:
    """Word lists keyed 'class' or 'class:form' (nouns: singular, pl; verbs: base past pp ing s)."""
    lexicon: dict[str, list[str]] = {}
    for path in sorted((text_dir / "nouns").glob("*.txt")):
        pairs = [e.split() for e in _entries(path)]
        if any(len(p) > 2 for p in pairs):
            raise SynthError(f"{path}: noun entries are 'singular [plural]'")
        lexicon[path.stem] = [p[0] for p in pairs]
        lexicon[path.stem + ":pl"] = [p[1] if len(p) == 2 else _plural(p[0]) for p in pairs]
    for path in sorted((text_dir / "verbs").glob("*.txt")):
        forms = [_verb_forms(e) for e in _entries(path)]
        for form in _VERB_FORMS:
            lexicon[f"{path.stem}:{form}"] = [f[form] for f in forms]
    for path in sorted((text_dir / "words").glob("*.txt")):
        lexicon[path.stem] = _entries(path)
    for key, words in lexicon.items():
        bad = [w for entry in words for w in entry.split() if not _WORD.fullmatch(w)]
        if bad:
            raise SynthError(f"word class {key!r} in {text_dir} has non-letter words {bad[:5]}")
    return lexicon


@dataclass(frozen=True)
class Sentence:
    spoken: str  # what eSpeak reads, with capital and punctuation for natural prosody
    transcript: str  # LibriSpeech style: upper case, A-Z, apostrophe, single spaces


class SentenceGenerator:
    """Draws sentences from grammar.txt filled with the word lists next to it."""

    def __init__(self, text_dir: Path = TEXT_DIR) -> None:
        if not (text_dir / "grammar.txt").is_file():
            raise SynthError(f"text material not found: {text_dir / 'grammar.txt'}")
        self.lexicon = load_lexicon(text_dir)
        self.rules: dict[str, list[list[str]]] = {}
        self.cumulative: dict[str, list[float]] = {}
        for number, line in enumerate((text_dir / "grammar.txt").read_text().splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            match = _RULE_LINE.fullmatch(line)
            if not match:
                raise SynthError(f"grammar.txt line {number}: cannot parse {line!r}")
            name, weight, body = match[1], float(match[2] or 1), match[3]
            for alternative in body.split("|"):
                tokens = alternative.split()
                if not tokens:
                    raise SynthError(f"grammar.txt line {number}: empty alternative")
                self.rules.setdefault(name, []).append(tokens)
                weights = self.cumulative.setdefault(name, [])
                weights.append((weights[-1] if weights else 0.0) + weight)
        self._check()

    def _check(self) -> None:
        if "SENTENCE" not in self.rules:
            raise SynthError("grammar.txt has no SENTENCE rule")
        for name, alternatives in self.rules.items():
            for token in (t for alt in alternatives for t in alt):
                lexical = _LEXICAL.fullmatch(token)
                if lexical and self._lexical_key(lexical) not in self.lexicon:
                    raise SynthError(f"grammar rule {name}: unknown word class {token}")
                if _RULE_NAME.fullmatch(token) and token not in self.rules:
                    raise SynthError(f"grammar rule {name}: undefined rule {token}")
                if not (lexical or _RULE_NAME.fullmatch(token) or token in _PUNCT
                        or token == "'s" or _WORD.fullmatch(token)):
                    raise SynthError(f"grammar rule {name}: bad token {token!r}")

    @staticmethod
    def _lexical_key(match: re.Match) -> str:
        return match[1] + (":" + match[2] if match[2] else "")

    def _expand(self, symbol: str, rng: random.Random, out: list[str], depth: int) -> None:
        if depth > 30:
            raise SynthError(f"grammar recursion too deep at rule {symbol}")
        cumulative = self.cumulative[symbol]
        index = bisect.bisect_right(cumulative, rng.random() * cumulative[-1])
        for token in self.rules[symbol][min(index, len(cumulative) - 1)]:
            lexical = _LEXICAL.fullmatch(token)
            if lexical:
                out += _pick(rng, self.lexicon[self._lexical_key(lexical)]).split()
            elif _RULE_NAME.fullmatch(token):
                self._expand(token, rng, out, depth + 1)
            else:
                out.append(token)

    def sentence(self, rng: random.Random) -> Sentence:
        """One sentence of MIN_WORDS..MAX_WORDS words."""
        while True:
            tokens: list[str] = []
            self._expand("SENTENCE", rng, tokens, 0)
            words: list[str] = []
            for i, token in enumerate(tokens):
                if token in _PUNCT or token.startswith("'"):
                    words[-1] += token
                elif token == "a" and i + 1 < len(tokens) and _vowel_sound(tokens[i + 1]):
                    words.append("an")
                else:
                    words.append(token)
            if MIN_WORDS <= len(words) <= MAX_WORDS:
                spoken = " ".join(words)
                transcript = " ".join(re.sub(r"[^A-Za-z']", "", w).upper() for w in words)
                return Sentence(spoken[0].upper() + spoken[1:], transcript)

    def vocabulary(self) -> set[str]:
        """Every upper-case word the grammar can produce (for reporting and tests)."""
        vocab = {"AN"}
        for token in (t for alts in self.rules.values() for alt in alts for t in alt):
            lexical = _LEXICAL.fullmatch(token)
            if lexical:
                vocab.update(w.upper() for e in self.lexicon[self._lexical_key(lexical)]
                             for w in e.split())
            elif _WORD.fullmatch(token):
                vocab.add(token.upper())
        return vocab


def _vowel_sound(word: str) -> bool:
    word = word.lower()
    if word.startswith(_CONSONANT_LETTER_VOWEL_SOUND):
        return True
    return word[:1] in "aeiou" and not word.startswith(_VOWEL_LETTER_CONSONANT_SOUND)


# --------------------------------------------------------------------------------------------
# Corpus plan: who says what, under which ids. Built entirely from the seed, before any audio.


@dataclass(frozen=True)
class Speaker:
    speaker_id: int
    gender: str
    voice: str  # eSpeak "language+variant", e.g. "en-us+f2"
    pitch: int  # eSpeak 0..99
    pitch_range: int  # eSpeak 0..99
    rate: int  # words per minute


@dataclass(frozen=True)
class Utterance:
    utt_id: str
    relpath: str  # flac path relative to OUT/LibriSpeech
    spoken: str
    transcript: str
    voice: str
    pitch: int
    pitch_range: int
    rate: int
    audio_seed: tuple[int, int, int]  # (seed, split index, utterance index)


@dataclass(frozen=True)
class Chapter:
    split: str
    speaker: Speaker
    chapter_id: int
    utterances: tuple[Utterance, ...]

    @property
    def relpath(self) -> str:
        return f"{self.split}/{self.speaker.speaker_id}/{self.chapter_id}"


def _even_sizes(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _jitter(rng: random.Random, value: int) -> int:
    """Per-utterance wobble of an eSpeak 0..99 setting around the speaker's own value."""
    return min(99, max(0, value + _below(rng, 11) - 5))


def _distinct_ids(rng: random.Random, low: int, high: int, count: int,
                  taken: set[int]) -> list[int]:
    ids: list[int] = []
    while len(ids) < count:
        candidate = low + _below(rng, high - low)
        if candidate not in taken:
            taken.add(candidate)
            ids.append(candidate)
    return ids


def _speakers(params: dict, split: str, ids: list[int]) -> list[Speaker]:
    """Each speaker is a voice variant with its own accent, pitch, range and rate."""
    rng = _stream(params["seed"], f"voices/{split}")
    variants = _shuffled(rng, VOICE_VARIANTS[split])
    accents = [name for name, weight in ACCENTS for _ in range(weight)]
    speakers = []
    for i, speaker_id in enumerate(ids):
        variant, gender = variants[i % len(variants)]
        speakers.append(Speaker(
            speaker_id=speaker_id, gender=gender, voice=f"{_pick(rng, accents)}+{variant}",
            pitch=30 + _below(rng, 41), pitch_range=30 + _below(rng, 51),
            rate=120 + _below(rng, 56),
        ))
    return speakers


def build_plan(params: dict, generator: SentenceGenerator) -> dict[str, list[Chapter]]:
    """Sentences, speakers, chapters and per-utterance prosody for every split."""
    sizes = {"train-clean-100": params["train_utts"], "dev-clean": params["dev_utts"],
             "test-clean": params["test_utts"]}
    speaker_counts = {"train-clean-100": params["train_speakers"],
                      "dev-clean": params["eval_speakers"], "test-clean": params["eval_speakers"]}
    held_out_first = ("test-clean", "dev-clean", "train-clean-100")

    text_rng = _stream(params["seed"], "text")
    seen: set[str] = set()
    sentences: dict[str, list[Sentence]] = {}
    for split in held_out_first:
        chosen: list[Sentence] = []
        for _ in range(50 * sizes[split] + 1000):
            if len(chosen) == sizes[split]:
                break
            sentence = generator.sentence(text_rng)
            if sentence.transcript not in seen:
                seen.add(sentence.transcript)
                chosen.append(sentence)
        else:
            raise SynthError(f"the grammar gave only {len(seen)} distinct sentences; ask for fewer")
        sentences[split] = chosen

    id_rng = _stream(params["seed"], "ids")
    taken_speakers: set[int] = set()
    taken_chapters: set[int] = set()
    plan: dict[str, list[Chapter]] = {}
    for split in held_out_first:
        n_speakers = min(speaker_counts[split], sizes[split])
        ids = _distinct_ids(id_rng, 10, 10000, n_speakers, taken_speakers)
        speakers = _speakers(params, split, ids)
        prosody_rng = _stream(params["seed"], f"prosody/{split}")
        pending = iter(sentences[split])
        utt_index = 0
        chapters: list[Chapter] = []
        for speaker, count in zip(speakers, _even_sizes(sizes[split], n_speakers)):
            chapter_sizes = _even_sizes(count, math.ceil(count / MAX_CHAPTER_UTTS))
            chapter_ids = _distinct_ids(id_rng, 100, 300000, len(chapter_sizes), taken_chapters)
            for chapter_id, size in zip(chapter_ids, chapter_sizes):
                utterances = []
                for n in range(size):
                    sentence = next(pending)
                    utt_id = f"{speaker.speaker_id}-{chapter_id}-{n:04d}"
                    utterances.append(Utterance(
                        utt_id=utt_id,
                        relpath=f"{split}/{speaker.speaker_id}/{chapter_id}/{utt_id}.flac",
                        spoken=sentence.spoken, transcript=sentence.transcript,
                        voice=speaker.voice,
                        pitch=_jitter(prosody_rng, speaker.pitch),
                        pitch_range=_jitter(prosody_rng, speaker.pitch_range),
                        rate=round(speaker.rate * _uniform(prosody_rng, 0.93, 1.07)),
                        audio_seed=(params["seed"], SPLITS.index(split), utt_index),
                    ))
                    utt_index += 1
                chapters.append(Chapter(split, speaker, chapter_id, tuple(utterances)))
        plan[split] = chapters
    return {split: plan[split] for split in SPLITS}


# --------------------------------------------------------------------------------------------
# eSpeak NG through ctypes.


def _espeak_paths() -> tuple[str, str]:
    try:
        import espeakng_loader
    except ImportError as error:
        raise SynthError("the espeakng_loader package is missing; install it with "
                         "'python -m pip install espeakng-loader'") from error
    try:
        return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
    except RuntimeError as error:
        raise SynthError(f"espeakng_loader has no voice data: {error}") from error


def check_voices(voices: Iterable[str]) -> None:
    """Fail early on a voice eSpeak lacks: it ignores an unknown variant without a word."""
    _, data_path = _espeak_paths()
    languages = {p.name.lower() for p in Path(data_path, "lang").rglob("*") if p.is_file()}
    variants = {p.name for p in Path(data_path, "voices", "!v").iterdir()}
    for voice in voices:
        language, _, variant = voice.partition("+")
        if language.lower() not in languages or variant not in variants:
            raise SynthError(f"eSpeak voice {voice!r} not found in {data_path}")


class ESpeakEngine:
    """One initialised libespeak-ng that never speaks itself: each utterance is synthesised in a
    forked child, so every utterance starts from the same pristine engine state."""

    def __init__(self) -> None:
        library_path, data_path = _espeak_paths()
        try:
            lib = ctypes.CDLL(library_path)
        except OSError as error:
            raise SynthError(f"cannot load the eSpeak NG library {library_path}: {error}"
                             ) from error
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(),
                                     ESPEAK_INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise SynthError(f"espeak_Initialize failed ({rate}) with voice data {data_path}")
        self.sample_rate: int = rate
        self._lib = lib
        self._libc = ctypes.CDLL(None)  # eSpeak's Klatt voices draw noise from libc rand()
        self._chunks: list[bytes] = []
        self._callback = SYNTH_CALLBACK(self._collect)  # kept alive: eSpeak holds the pointer
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, samples, count: int, _events) -> int:
        if count > 0 and samples:
            self._chunks.append(ctypes.string_at(samples, 2 * count))
        return 0  # 0 = keep synthesising

    def _speak(self, utt: Utterance, seed: int) -> bytes:
        lib = self._lib
        lib.espeak_ng_SetRandSeed(seed)
        self._libc.srand(seed)
        if lib.espeak_SetVoiceByName(utt.voice.encode()) != 0:
            raise SynthError(f"eSpeak cannot select voice {utt.voice!r}")
        for parameter, value in ((ESPEAK_RATE, utt.rate), (ESPEAK_VOLUME, ESPEAK_SAFE_VOLUME),
                                 (ESPEAK_PITCH, utt.pitch), (ESPEAK_RANGE, utt.pitch_range)):
            lib.espeak_SetParameter(parameter, value, 0)
        text = utt.spoken.encode() + b"\0"
        status = lib.espeak_Synth(text, len(text), 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8,
                                  None, None)
        if status != 0:
            raise SynthError(f"espeak_Synth failed ({status})")
        return b"".join(self._chunks)

    def synthesize(self, utt: Utterance, seed: int) -> np.ndarray:
        """int16 samples at self.sample_rate."""
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            code = 1
            try:
                with os.fdopen(write_fd, "wb") as pipe:
                    pipe.write(self._speak(utt, seed))
                code = 0
            except BrokenPipeError:  # the worker was stopped (interrupted run): nobody listens
                pass
            except BaseException:  # report anything, then leave without running parent cleanup
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            pcm = pipe.read()
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        if code != 0 or not pcm:
            raise SynthError(f"eSpeak synthesis failed (child exit {code}, {len(pcm)} bytes) for "
                             f"{utt.utt_id} with voice {utt.voice!r}")
        return np.frombuffer(pcm, dtype=np.int16)


# --------------------------------------------------------------------------------------------
# Audio: 22.05 kHz eSpeak output -> 16 kHz, trimmed, level-varied, lightly noisy.
# Plain numpy FFTs: no torch in the workers keeps the per-utterance fork cheap.


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling in the frequency domain. The input is zero-padded to
    rate_in/gcd * 2**k samples so both transform sizes are fast and the ratio is exact; the
    top 5% of the output band is rolled off with a raised cosine to avoid ringing. Circular
    wrap-around is harmless because eSpeak output starts and ends in silence."""
    common = math.gcd(rate_in, rate_out)
    up, down = rate_out // common, rate_in // common
    blocks = 1 << max(0, math.ceil(math.log2(max(1, len(x)) / down)))
    n_in, n_out = blocks * down, blocks * up
    spectrum = np.fft.rfft(x, n_in)[: n_out // 2 + 1]
    band = np.arange(len(spectrum)) / (n_out / 2)  # 0 .. 1 = output Nyquist
    if rate_out < rate_in:
        spectrum = spectrum * (0.5 + 0.5 * np.cos(np.pi * np.clip((band - 0.95) / 0.05, 0, 1)))
    y = np.fft.irfft(spectrum, n_out) * (n_out / n_in)
    return y[: math.ceil(len(x) * up / down)]


def _colored_noise(length: int, slope: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with a 1/f**slope power spectrum (0 = white, 1 = pink)."""
    n_fft = 1 << max(1, math.ceil(math.log2(max(1, length))))  # fast size, then cut
    spectrum = np.fft.rfft(rng.standard_normal(n_fft))
    frequencies = np.arange(len(spectrum), dtype=np.float64)
    frequencies[0] = 1.0
    noise = np.fft.irfft(spectrum / frequencies ** (slope / 2), n_fft)[:length]
    return noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)


def finish_audio(pcm: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Resample to 16 kHz, keep 0.1-0.4 s of silence at the ends, set a random speech level,
    add noise at 25-35 dB SNR. Returns int16."""
    x = resample(pcm.astype(np.float64) / 32768.0, rate, SAMPLE_RATE)
    frame = SAMPLE_RATE // 100
    frames = len(x) // frame
    energy = np.sqrt(np.mean(x[: frames * frame].reshape(frames, frame) ** 2, axis=1))
    if frames == 0 or energy.max() <= 1e-6:
        raise SynthError("eSpeak returned silence")
    active = np.flatnonzero(energy > energy.max() * 10 ** (-40 / 20))
    speech = x[active[0] * frame: (active[-1] + 1) * frame]
    speech_rms = np.sqrt(np.mean(energy[active] ** 2))
    level = 10 ** (_np_uniform(rng, -26.0, -18.0) / 20)
    speech = speech * (level / speech_rms)
    lead = np.zeros(int(_np_uniform(rng, 0.10, 0.30) * SAMPLE_RATE))
    tail = np.zeros(int(_np_uniform(rng, 0.15, 0.40) * SAMPLE_RATE))
    y = np.concatenate([lead, speech, tail])
    snr_db = _np_uniform(rng, 25.0, 35.0)
    y += _colored_noise(len(y), _np_uniform(rng, 0.0, 1.5), rng) * level * 10 ** (-snr_db / 20)
    peak = np.abs(y).max()
    if peak > 0.97:
        y *= 0.97 / peak
    return np.round(y * 32767).astype(np.int16)


def _np_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(low + (high - low) * rng.random())


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to a hidden temporary name, then rename, so no reader ever sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


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
    _write_atomic(Path(root) / utt.relpath, buffer.getvalue())
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
        if self._pool is None:
            return map(render_utterance, tasks)
        return self._pool.imap_unordered(render_utterance, tasks, chunksize=4)

    def close(self) -> None:
        """Stop the workers; any still busy were abandoned by an error or an interrupt."""
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()


# --------------------------------------------------------------------------------------------
# Output directory handling and the command line.


def _prepare_root(root: Path, params: dict, overwrite: bool) -> None:
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
    _write_atomic(params_path, (json.dumps(params, indent=1, sort_keys=True) + "\n").encode())


def _summary_line(split: str, stats: dict, seconds: float | None) -> str:
    took = f"generated in {seconds:.1f} s" if seconds is not None else "already complete"
    return (f"{split}: {stats['utterances']} utterances, {stats['hours']:.3f} h, "
            f"{stats['speakers']} speakers, {stats['chapters']} chapters, "
            f"{stats['min_seconds']:.1f}-{stats['max_seconds']:.1f} s each, {took}")


def _write_metadata(root: Path, plan: dict[str, list[Chapter]], samples: dict[str, int]) -> None:
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
    readme = ("Synthetic speech in the LibriSpeech layout, made by tools/synth_librispeech.py "
              "(speechforge) with eSpeak NG from self-written text. Not real read speech.\n")
    _write_atomic(root / "SPEAKERS.TXT", ("\n".join(speakers) + "\n").encode())
    _write_atomic(root / "CHAPTERS.TXT", ("\n".join(chapters) + "\n").encode())
    _write_atomic(root / "README.TXT", readme.encode())


def generate(args: argparse.Namespace) -> None:
    """Plan, render and index the corpus; resume or skip work a previous run already did."""
    root = Path(args.out) / "LibriSpeech"
    params = {"format_version": FORMAT_VERSION, "seed": args.seed, "train_utts": args.train_utts,
              "dev_utts": args.dev_utts, "test_utts": args.test_utts,
              "train_speakers": args.train_speakers, "eval_speakers": args.eval_speakers}
    complete_path = root / COMPLETE_FILE
    if complete_path.is_file():
        done = json.loads(complete_path.read_text())
        if done["params"] == params:
            for split in SPLITS:
                print(_summary_line(split, done["splits"][split], None))
            return
    _prepare_root(root, params, args.overwrite)
    check_voices({f"{accent}+{variant}" for accent, _ in ACCENTS
                  for variants in VOICE_VARIANTS.values() for variant, _ in variants})
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
                stem = f"{chapter.speaker.speaker_id}-{chapter.chapter_id}"
                lines = "".join(f"{u.utt_id} {u.transcript}\n" for u in chapter.utterances)
                _write_atomic(root / chapter.relpath / f"{stem}.trans.txt", lines.encode())
            seconds = [samples[u.utt_id] / SAMPLE_RATE for c in chapters for u in c.utterances]
            splits[split] = {
                "utterances": len(seconds), "hours": round(sum(seconds) / 3600, 4),
                "speakers": len({c.speaker.speaker_id for c in chapters}),
                "chapters": len(chapters),
                "min_seconds": round(min(seconds), 2), "max_seconds": round(max(seconds), 2),
                "words": len({w for c in chapters for u in c.utterances
                              for w in u.transcript.split()}),
                "voices": sorted({c.speaker.voice for c in chapters}),
            }
            print(_summary_line(split, splits[split], time.monotonic() - start), flush=True)
    finally:
        renderer.close()
    _write_metadata(root, plan, samples)
    _write_atomic(complete_path, (json.dumps({"params": params, "splits": splits}, indent=1,
                                             sort_keys=True) + "\n").encode())


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Generate a synthetic English speech corpus (eSpeak NG, self-written text) "
                    "in the exact LibriSpeech layout: DIR/LibriSpeech/{train-clean-100,dev-clean,"
                    "test-clean}. Re-running with the same settings skips finished work.")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="output directory; the corpus goes to DIR/LibriSpeech")
    parser.add_argument("--train-utts", type=_positive, default=6750, metavar="N",
                        help="utterances in train-clean-100 (default 6750, about 7.5 hours)")
    parser.add_argument("--dev-utts", type=_positive, default=200, metavar="N",
                        help="utterances in dev-clean (default 200)")
    parser.add_argument("--test-utts", type=_positive, default=200, metavar="N",
                        help="utterances in test-clean (default 200)")
    parser.add_argument("--train-speakers", type=_positive, default=40, metavar="N",
                        help="synthetic speakers in train-clean-100 (default 40)")
    parser.add_argument("--eval-speakers", type=_positive, default=8, metavar="N",
                        help="synthetic speakers in each of dev-clean and test-clean (default 8)")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="random seed; the same seed and sizes give byte-identical output "
                             "(default 0)")
    parser.add_argument("--jobs", type=_positive, default=2, metavar="J",
                        help="parallel synthesis processes; does not change the output (default 2)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a corpus this tool made in DIR with other settings")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        generate(args)
    except SynthError as error:
        print(f"synth_librispeech: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("synth_librispeech: interrupted; run the same command again to resume",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
