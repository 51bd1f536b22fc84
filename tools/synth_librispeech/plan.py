"""The corpus plan: who says what, under which ids, with which prosody.

Built entirely from the seed and the size flags before any audio exists, so the output never
depends on ``--jobs`` or the order of work. Dev and test sentences are drawn first and train
never repeats one of them, so held-out WER measures generalisation, not recall.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .draws import below, stream, uniform
from .errors import SynthError
from .grammar import Sentence, SentenceGenerator
from .voices import Speaker, draw_speakers

SPLITS = ("train-clean-100", "dev-clean", "test-clean")
MAX_CHAPTER_UTTS = 50  # LibriSpeech chapters hold about fifty utterances


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
    """``total`` split into ``parts`` sizes that differ by at most one, the larger first."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _jitter(rng: random.Random, value: int) -> int:
    """Per-utterance wobble of an eSpeak 0..99 setting around the speaker's own value."""
    return min(99, max(0, value + below(rng, 11) - 5))


def _distinct_ids(rng: random.Random, low: int, high: int, count: int,
                  taken: set[int]) -> list[int]:
    """``count`` new ids in low..high-1 that are not in ``taken``; they are added to it."""
    ids: list[int] = []
    while len(ids) < count:
        candidate = low + below(rng, high - low)
        if candidate not in taken:
            taken.add(candidate)
            ids.append(candidate)
    return ids


def build_plan(params: dict, generator: SentenceGenerator) -> dict[str, list[Chapter]]:
    """Sentences, speakers, chapters and per-utterance prosody for every split."""
    sizes = {"train-clean-100": params["train_utts"], "dev-clean": params["dev_utts"],
             "test-clean": params["test_utts"]}
    speaker_counts = {"train-clean-100": params["train_speakers"],
                      "dev-clean": params["eval_speakers"], "test-clean": params["eval_speakers"]}
    held_out_first = ("test-clean", "dev-clean", "train-clean-100")

    text_rng = stream(params["seed"], "text")
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

    id_rng = stream(params["seed"], "ids")
    taken_speakers: set[int] = set()
    taken_chapters: set[int] = set()
    plan: dict[str, list[Chapter]] = {}
    for split in held_out_first:
        n_speakers = min(speaker_counts[split], sizes[split])
        ids = _distinct_ids(id_rng, 10, 10000, n_speakers, taken_speakers)
        speakers = draw_speakers(params, split, ids)
        prosody_rng = stream(params["seed"], f"prosody/{split}")
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
                        rate=round(speaker.rate * uniform(prosody_rng, 0.93, 1.07)),
                        audio_seed=(params["seed"], SPLITS.index(split), utt_index),
                    ))
                    utt_index += 1
                chapters.append(Chapter(split, speaker, chapter_id, tuple(utterances)))
        plan[split] = chapters
    return {split: plan[split] for split in SPLITS}
