"""The eSpeak NG binding: libespeak-ng through ctypes, in synchronous mode.

``pip install espeakng-loader`` ships the library and its voice data. eSpeak keeps hidden state
between utterances (pitch flutter, filter memories), so every utterance is rendered in a freshly
forked copy of an engine that has never spoken: its audio depends only on its own settings and
seed. Linux and macOS only (the per-utterance engine copy uses ``os.fork``).
"""

from __future__ import annotations

import ctypes
import os
import traceback
from pathlib import Path
from typing import Iterable

import numpy as np

from .errors import SynthError
from .plan import Utterance

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


def _espeak_paths() -> tuple[str, str]:
    """(library path, voice data path) from espeakng_loader."""
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
