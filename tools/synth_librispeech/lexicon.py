"""Word lists of the text material (``tools/synthetic_text/{nouns,verbs,words}``), inflected.

Nouns get their plural and verbs their five forms by English spelling rules, so a word file
lists each word once and only irregular forms are written out.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import SynthError

WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")  # one spoken word: letters, one inner apostrophe
_VERB_FORMS = ("base", "past", "pp", "ing", "s")


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
        bad = [w for entry in words for w in entry.split() if not WORD.fullmatch(w)]
        if bad:
            raise SynthError(f"word class {key!r} in {text_dir} has non-letter words {bad[:5]}")
    return lexicon
