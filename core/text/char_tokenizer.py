"""Character tokenizer; spaces become the word-boundary unit ``▁``."""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from speechforge.config import atomic_write_text
from speechforge.text.tokenizer import BLANK, SOS_EOS, UNK, Tokenizer

SPACE = "▁"


class CharTokenizer(Tokenizer):
    kind = "char"

    def __init__(self, units: list[str]) -> None:
        self.units = units
        self.index = {u: i for i, u in enumerate(units)}

    @classmethod
    def train(cls, texts: Iterable[str]) -> CharTokenizer:
        chars = sorted({SPACE if c == " " else c for t in texts for c in t.strip()})
        return cls([BLANK, UNK, *chars, SOS_EOS])

    @property
    def vocab_size(self) -> int:
        return len(self.units)

    @property
    def pieces(self) -> list[str]:
        return list(self.units)

    def encode(self, text: str) -> list[int]:
        return [self.index.get(SPACE if c == " " else c, 1) for c in " ".join(text.split())]

    def decode(self, ids: list[int]) -> str:
        chars = [self.units[i] for i in ids if 0 < i < self.vocab_size - 1]
        return "".join(chars).replace(SPACE, " ").strip()

    def save(self, directory: Path) -> None:
        atomic_write_text(directory / "units.txt", "".join(f"{u}\n" for u in self.units))
        atomic_write_text(directory / "tokenizer.json", json.dumps({"type": self.kind, "vocab_size": self.vocab_size}))

    @classmethod
    def load(cls, directory: Path) -> CharTokenizer:
        return cls((directory / "units.txt").read_text().splitlines())
