"""Synthetic speakers: eSpeak voice variants, accents and each speaker's own prosody.

A "speaker" is a voice variant with its own accent, pitch, pitch range and rate. Dev and test
use variants that train never hears, so held-out WER measures generalisation to new voices.
"""

from __future__ import annotations

from dataclasses import dataclass

from .draws import below, pick, shuffled, stream

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


@dataclass(frozen=True)
class Speaker:
    speaker_id: int
    gender: str
    voice: str  # eSpeak "language+variant", e.g. "en-us+f2"
    pitch: int  # eSpeak 0..99
    pitch_range: int  # eSpeak 0..99
    rate: int  # words per minute


def every_voice() -> set[str]:
    """Each "language+variant" a speaker can get, to check against the eSpeak data up front."""
    return {f"{accent}+{variant}" for accent, _ in ACCENTS
            for variants in VOICE_VARIANTS.values() for variant, _ in variants}


def draw_speakers(params: dict, split: str, ids: list[int]) -> list[Speaker]:
    """Each speaker is a voice variant with its own accent, pitch, range and rate."""
    rng = stream(params["seed"], f"voices/{split}")
    variants = shuffled(rng, VOICE_VARIANTS[split])
    accents = [name for name, weight in ACCENTS for _ in range(weight)]
    speakers = []
    for i, speaker_id in enumerate(ids):
        variant, gender = variants[i % len(variants)]
        speakers.append(Speaker(
            speaker_id=speaker_id, gender=gender, voice=f"{pick(rng, accents)}+{variant}",
            pitch=30 + below(rng, 41), pitch_range=30 + below(rng, 51),
            rate=120 + below(rng, 56),
        ))
    return speakers
