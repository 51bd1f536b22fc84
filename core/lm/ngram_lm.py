"""Token n-gram language model with interpolated Kneser-Ney smoothing (Chen & Goodman, 1998),
stored as an ARPA file, for shallow fusion in CTC prefix beam search.

It works on the acoustic model's own token ids (characters or BPE pieces), so a hypothesis is
scored as it grows, one token at a time. The ARPA file names tokens by their pieces
(``▁`` for a character tokenizer's word boundary), so KenLM or Kaldi tools read it too.

Smoothing: the highest order counts n-grams, lower orders count how many distinct tokens
precede them (continuation counts; n-grams starting with ``<s>`` keep their counts), each
order discounts by D = n1 / (n1 + 2 n2) and gives the mass to the next lower order, down to a
uniform distribution over the vocabulary. Written as ARPA probabilities plus backoff weights,
the standard backoff lookup returns exactly these interpolated probabilities.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from speechforge.config import atomic_write_text
from speechforge.errors import ConfigError

BOS, EOS = "<s>", "</s>"
#: ARPA's log10 of zero probability (``<s>`` is never predicted)
LOG10_ZERO = -99.0
LN10 = math.log(10.0)

Ngram = tuple[int, ...]


class NgramLM:
    """Log-probabilities of the next token given the previous ``order - 1``.

    Token ids are the tokenizer's; ``bos``/``eos`` are two extra ids past the vocabulary.
    """

    def __init__(self, order: int, pieces: Sequence[str], probs: dict[Ngram, float], backoffs: dict[Ngram, float]) -> None:
        """Args: order; pieces: id -> piece of the tokenizer; probs / backoffs: log10 values by
        n-gram (ids, with ``bos``/``eos`` as ``len(pieces)`` and ``len(pieces) + 1``)."""
        self.order = order
        self.pieces = list(pieces)
        self.bos, self.eos = len(self.pieces), len(self.pieces) + 1
        self.probs = probs
        self.backoffs = backoffs

    # -- training -----------------------------------------------------------------------------
    @classmethod
    def train(cls, sentences: Iterable[Sequence[int]], order: int, pieces: Sequence[str], skip_ids: Iterable[int] = ()) -> NgramLM:
        """Count and smooth.

        Args: sentences of token ids; order >= 1; pieces: id -> piece (the vocabulary the
            uniform floor spreads over); skip_ids: ids that are never predicted (blank, <unk>,
            <sos/eos>): they get no probability.
        """
        if order < 1:
            raise ConfigError(f"lm.order: must be at least 1, got {order}")
        bos, eos = len(pieces), len(pieces) + 1
        skip = set(skip_ids)
        vocabulary = [i for i in range(len(pieces)) if i not in skip] + [eos]
        raw: list[Counter[Ngram]] = [Counter() for _ in range(order + 1)]  # raw[k]: k-gram counts
        for sentence in sentences:
            tokens = (bos, *(t for t in sentence if t not in skip), eos)
            for end in range(1, len(tokens)):
                for k in range(1, min(order, end + 1) + 1):
                    raw[k][tokens[end - k + 1 : end + 1]] += 1
        if not raw[1]:
            raise ConfigError("lm: no sentences to train on")
        counts = [Counter() for _ in range(order + 1)]
        counts[order] = raw[order]
        for k in range(order - 1, 0, -1):
            for longer in raw[k + 1]:  # continuation count: distinct tokens seen before it
                counts[k][longer[1:]] += 1
            for ngram, count in raw[k].items():  # "<s> ..." has nothing before it: keep its count
                if ngram[0] == bos:
                    counts[k][ngram] = count
        return cls._smooth(order, pieces, counts, vocabulary)

    @classmethod
    def _smooth(cls, order: int, pieces: Sequence[str], counts: list[Counter[Ngram]], vocabulary: list[int]) -> NgramLM:
        probs: dict[Ngram, float] = {}
        backoffs: dict[Ngram, float] = {}
        lower: dict[Ngram, float] = {}  # interpolated probabilities of the order below (natural)
        for k in range(1, order + 1):
            table = counts[k]
            discount = _discount(table)
            totals: dict[Ngram, int] = defaultdict(int)
            types: dict[Ngram, int] = defaultdict(int)
            for ngram, count in table.items():
                totals[ngram[:-1]] += count
                types[ngram[:-1]] += 1
            current: dict[Ngram, float] = {}
            if k == 1:
                uniform = 1.0 / len(vocabulary)
                total, kinds = totals[()], types[()]
                for token in vocabulary:
                    seen = max(table.get((token,), 0) - discount, 0.0) / total
                    current[(token,)] = seen + discount * kinds / total * uniform
            else:
                for ngram, count in table.items():
                    history = ngram[:-1]
                    gamma = discount * types[history] / totals[history]
                    # ngram[1:] is seen one order down: a continuation count or, after <s>, a count
                    current[ngram] = (count - discount) / totals[history] + gamma * lower[ngram[1:]]
            for history in totals:
                if history:
                    backoffs[history] = math.log10(discount * types[history] / totals[history])
            probs.update({g: math.log10(p) for g, p in current.items()})
            lower.update(current)
        bos = len(pieces)
        probs[(bos,)] = LOG10_ZERO
        return cls(order, pieces, probs, backoffs)

    # -- scoring ------------------------------------------------------------------------------
    def log_prob(self, history: Sequence[int], token: int) -> float:
        """Natural log p(token | history); ``history`` may start with ``bos`` and be any length
        (only the last ``order - 1`` ids count)."""
        context = tuple(history[max(0, len(history) - self.order + 1) :]) if self.order > 1 else ()
        log10 = 0.0
        while True:
            value = self.probs.get(context + (token,))
            if value is not None:
                return (log10 + value) * LN10
            if not context:
                return (log10 + LOG10_ZERO) * LN10  # a token outside the vocabulary
            log10 += self.backoffs.get(context, 0.0)
            context = context[1:]

    def sentence_log_prob(self, tokens: Sequence[int]) -> float:
        """Natural log p(tokens </s> | <s>)."""
        history = [self.bos]
        total = 0.0
        for token in [*tokens, self.eos]:
            total += self.log_prob(history, token)
            history.append(token)
        return total

    # -- ARPA ---------------------------------------------------------------------------------
    def _word(self, token: int) -> str:
        return BOS if token == self.bos else EOS if token == self.eos else self.pieces[token]

    def save_arpa(self, path: Path) -> None:
        """Write the ARPA file atomically."""
        by_order: dict[int, list[Ngram]] = defaultdict(list)
        for ngram in self.probs:
            by_order[len(ngram)].append(ngram)
        lines = ["", "\\data\\"]
        lines += [f"ngram {k}={len(by_order[k])}" for k in range(1, self.order + 1)]
        for k in range(1, self.order + 1):
            lines += ["", f"\\{k}-grams:"]
            for ngram in sorted(by_order[k]):
                words = " ".join(self._word(t) for t in ngram)
                line = f"{self.probs[ngram]:.7f}\t{words}"
                if ngram in self.backoffs and k < self.order:
                    line += f"\t{self.backoffs[ngram]:.7f}"
                lines.append(line)
        lines += ["", "\\end\\", ""]
        atomic_write_text(Path(path), "\n".join(lines))

    @classmethod
    def load_arpa(cls, path: Path, pieces: Sequence[str]) -> NgramLM:
        """Read an ARPA file whose words are ``pieces`` (plus ``<s>``, ``</s>``)."""
        ids = {piece: i for i, piece in enumerate(pieces)}
        ids[BOS], ids[EOS] = len(pieces), len(pieces) + 1
        probs: dict[Ngram, float] = {}
        backoffs: dict[Ngram, float] = {}
        order = 0
        section = 0
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path}: cannot read the language model: {error}") from error
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line == "\\data\\" or line.startswith("ngram "):
                if line.startswith("ngram "):
                    order = max(order, int(line.split()[1].split("=")[0]))
                continue
            if line.startswith("\\") and line.endswith("-grams:"):
                section = int(line[1:].split("-")[0])
                continue
            if line == "\\end\\":
                break
            fields = line.split()
            if section == 0 or len(fields) not in (section + 1, section + 2):
                raise ConfigError(f"{path}:{number}: not an ARPA {section}-gram line: {line[:80]!r}")
            unknown = [w for w in fields[1 : section + 1] if w not in ids]
            if unknown:
                raise ConfigError(f"{path}:{number}: {unknown[0]!r} is not a token of this tokenizer")
            ngram = tuple(ids[w] for w in fields[1 : section + 1])
            probs[ngram] = float(fields[0])
            if len(fields) == section + 2:
                backoffs[ngram] = float(fields[-1])
        if not order or not probs:
            raise ConfigError(f"{path}: no n-grams: not an ARPA file")
        return cls(order, pieces, probs, backoffs)


def _discount(table: Counter[Ngram]) -> float:
    """Absolute discount D = n1 / (n1 + 2 n2) from the counts of counts (0.5 when undefined)."""
    occurrences = Counter(table.values())
    n1, n2 = occurrences.get(1, 0), occurrences.get(2, 0)
    if n1 == 0 or n2 == 0:
        return 0.5
    return min(max(n1 / (n1 + 2 * n2), 0.1), 0.9)

