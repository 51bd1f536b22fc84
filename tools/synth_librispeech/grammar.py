"""Sentences from a small weighted grammar (``tools/synthetic_text/grammar.txt``).

The material is self-written, so it is free of copyright, and the word lists give a few
thousand distinct words. Each sentence comes twice: as eSpeak reads it (capital, punctuation
for natural prosody) and as a LibriSpeech transcript.
"""

from __future__ import annotations

import bisect
import random
import re
from dataclasses import dataclass
from pathlib import Path

from .draws import pick
from .errors import SynthError
from .lexicon import WORD, load_lexicon

TEXT_DIR = Path(__file__).resolve().parent.parent / "synthetic_text"
MIN_WORDS, MAX_WORDS = 5, 15

_PUNCT = {",", ".", "?"}
_RULE_LINE = re.compile(r"([A-Z][A-Z_]+)\s*(\d+)?\s*=\s*(.+)")
_RULE_NAME = re.compile(r"[A-Z][A-Z_]+")
_LEXICAL = re.compile(r"\{([a-z_]+)(?::([a-z]+))?\}")
# Spellings whose first letter misleads the a/an choice.
_VOWEL_LETTER_CONSONANT_SOUND = ("uni", "use", "usu", "uti", "eu", "one", "once")
_CONSONANT_LETTER_VOWEL_SOUND = ("hour", "honest", "honor", "heir")


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
                        or token == "'s" or WORD.fullmatch(token)):
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
                out += pick(rng, self.lexicon[self._lexical_key(lexical)]).split()
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
            elif WORD.fullmatch(token):
                vocab.add(token.upper())
        return vocab


def _vowel_sound(word: str) -> bool:
    """Whether ``word`` starts with a vowel sound, so a preceding 'a' becomes 'an'."""
    word = word.lower()
    if word.startswith(_CONSONANT_LETTER_VOWEL_SOUND):
        return True
    return word[:1] in "aeiou" and not word.startswith(_VOWEL_LETTER_CONSONANT_SOUND)
