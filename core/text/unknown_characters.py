"""Characters of the training transcripts that the tokenizer maps to ``<unk>``, counted once at
the start of training: lower-case text for an upper-case character set, or a stray symbol,
otherwise trains a model that can never write them, silently."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from speechforge.text.tokenizer import Tokenizer

UNK_ID = 1  # every speechforge tokenizer's <unk>


def unknown_characters(tokenizer: Tokenizer, texts: Iterable[str]) -> Counter[str]:
    """How often each character of ``texts`` that ``tokenizer`` encodes as ``<unk>`` occurs."""
    counts = Counter(c for text in texts for c in text if not c.isspace())
    return Counter({c: n for c, n in counts.items() if UNK_ID in tokenizer.encode(c)})


def describe_unknown(tokenizer: Tokenizer, unknown: Counter[str], source: str) -> str:
    """One line: ``SOURCE: 2 characters the tokenizer does not know: 'a' x12 ...``, with a hint
    when the upper-case forms are known."""
    listed = ", ".join(f"{c!r} x{n}" for c, n in unknown.most_common(10))
    known_upper = [c for c in unknown if c.upper() != c and UNK_ID not in tokenizer.encode(c.upper())]
    hint = "; the tokenizer knows their upper-case forms (lower-case text for an upper-case character set?)" if known_upper else ""
    return f"{source}: {len(unknown)} characters the tokenizer does not know (encoded as <unk>): {listed}{hint}"
