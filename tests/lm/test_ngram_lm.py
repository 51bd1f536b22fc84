"""Token n-gram LM: interpolated Kneser-Ney equal to a naive formulation, normalised, and
unchanged through its ARPA file."""
from __future__ import annotations

import math
import random
from collections import Counter
from functools import lru_cache

import pytest

from speechforge.errors import ConfigError
from speechforge.lm.ngram_lm import NgramLM

PIECES = ["<blank>", "<unk>", "a", "b", "c", "▁", "<sos/eos>"]
SKIP = (0, 1, 6)
BOS, EOS = len(PIECES), len(PIECES) + 1
PREDICTABLE = [2, 3, 4, 5, EOS]


def sentences(seed: int = 0, count: int = 150) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.choice([2, 3, 3, 4, 5]) for _ in range(rng.randint(0, 7))] for _ in range(count)]


def naive_kneser_ney(data: list[list[int]], order: int):
    """p(w | h) straight from the definition, recomputing every count on demand."""
    padded = [(BOS, *s, EOS) for s in data]
    raw = Counter(
        seq[end - k + 1 : end + 1] for seq in padded for end in range(1, len(seq)) for k in range(1, min(order, end + 1) + 1)
    )

    def count(gram: tuple[int, ...]) -> int:
        if len(gram) == order or gram[0] == BOS:
            return raw[gram]
        return len({e[0] for e in raw if len(e) == len(gram) + 1 and e[1:] == gram})

    @lru_cache(maxsize=None)
    def discount(k: int) -> float:
        grams = {e[-k:] if len(e) >= k else None for e in raw} - {None}
        grams = {g for g in grams if len(g) == k}
        hist = Counter(count(g) for g in grams if count(g) > 0)
        n1, n2 = hist[1], hist[2]
        return 0.5 if not n1 or not n2 else min(max(n1 / (n1 + 2 * n2), 0.1), 0.9)

    @lru_cache(maxsize=None)
    def prob(word: int, history: tuple[int, ...]) -> float:
        history = history[max(0, len(history) - order + 1) :] if order > 1 else ()
        k = len(history) + 1
        counts = {v: count(history + (v,)) for v in PREDICTABLE}
        total = sum(counts.values())
        lower = 1 / len(PREDICTABLE) if k == 1 else prob(word, history[1:])
        if total == 0:
            return lower
        d = discount(k)
        types = sum(1 for c in counts.values() if c > 0)
        return max(counts[word] - d, 0) / total + d * types / total * lower

    return prob


HISTORIES = [(), (BOS,), (BOS, 2), (3, 3), (BOS, 2, 3, 4), (5, 5, 5, 5), (4, 2, 2), (2, 5, 4, 3, 2)]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_probabilities_equal_the_naive_definition_and_sum_to_one(order):
    data = sentences()
    lm = NgramLM.train(data, order, PIECES, skip_ids=SKIP)
    reference = naive_kneser_ney(data, order)
    for history in HISTORIES:
        probs = [math.exp(lm.log_prob(history, w)) for w in PREDICTABLE]
        assert sum(probs) == pytest.approx(1.0, abs=1e-9)
        for word, p in zip(PREDICTABLE, probs):
            assert p == pytest.approx(reference(word, history), rel=1e-9), (history, word)


def test_skipped_and_start_tokens_are_never_predicted():
    lm = NgramLM.train(sentences(), 3, PIECES, skip_ids=SKIP)
    for token in (*SKIP, BOS):
        assert lm.log_prob((BOS, 2), token) < -200


def test_arpa_round_trip_keeps_every_probability(tmp_path):
    lm = NgramLM.train(sentences(), 4, PIECES, skip_ids=SKIP)
    lm.save_arpa(tmp_path / "lm" / "lm.arpa")
    text = (tmp_path / "lm" / "lm.arpa").read_text(encoding="utf-8")
    assert text.lstrip().startswith("\\data\\") and "\\4-grams:" in text and text.rstrip().endswith("\\end\\")
    loaded = NgramLM.load_arpa(tmp_path / "lm" / "lm.arpa", PIECES)
    assert loaded.order == 4
    for history in HISTORIES:
        for word in PREDICTABLE:
            assert loaded.log_prob(history, word) == pytest.approx(lm.log_prob(history, word), abs=1e-6)
    for s in sentences(seed=1, count=20):
        assert loaded.sentence_log_prob(s) == pytest.approx(lm.sentence_log_prob(s), abs=1e-5)


def test_frequent_continuations_score_higher():
    lm = NgramLM.train([[2, 3, 4]] * 20 + [[2, 3, 5]], 3, PIECES, skip_ids=SKIP)
    assert lm.log_prob((2, 3), 4) > lm.log_prob((2, 3), 5) > lm.log_prob((2, 3), 2)


def test_bad_input_is_named(tmp_path):
    with pytest.raises(ConfigError, match="lm.order: must be at least 1, got 0"):
        NgramLM.train(sentences(), 0, PIECES)
    with pytest.raises(ConfigError, match="no sentences"):
        NgramLM.train([], 3, PIECES)
    path = tmp_path / "lm.arpa"
    NgramLM.train(sentences(), 2, PIECES, skip_ids=SKIP).save_arpa(path)
    with pytest.raises(ConfigError, match=r"lm.arpa:\d+: 'c' is not a token of this tokenizer"):
        NgramLM.load_arpa(path, ["<blank>", "<unk>", "a", "b", "x", "▁", "<sos/eos>"])
    (tmp_path / "junk.arpa").write_text("hello\n")
    with pytest.raises(ConfigError, match="junk.arpa"):
        NgramLM.load_arpa(tmp_path / "junk.arpa", PIECES)


def test_lm_command_trains_on_the_tokenized_transcripts_or_skips_without_an_order(tmp_path):
    import argparse

    from speechforge.commands import lm as lm_command
    from speechforge.text.char_tokenizer import CharTokenizer

    texts = {"u1": "AB CA", "u2": "ABC", "u3": ""}
    (tmp_path / "text").write_text("".join(f"{k} {v}\n" for k, v in texts.items()))
    (tmp_path / "conf.yaml").write_text("lm: {order: 3}\n")
    tokenizer = CharTokenizer.train(texts.values())
    tokenizer.save(tmp_path / "exp" / "tokenizer")
    args = argparse.Namespace(config=tmp_path / "conf.yaml", text=tmp_path / "text", exp_dir=tmp_path / "exp", overrides=[])
    assert lm_command.run(args) == 0
    lm = NgramLM.load_arpa(tmp_path / "exp" / "lm" / "lm.arpa", tokenizer.pieces)
    expected = NgramLM.train([tokenizer.encode("AB CA"), tokenizer.encode("ABC")], 3, tokenizer.pieces, skip_ids=(0, 1, tokenizer.vocab_size - 1))
    ab = tokenizer.encode("AB")
    assert lm.sentence_log_prob(ab) == pytest.approx(expected.sentence_log_prob(ab), abs=1e-5)
    (tmp_path / "exp" / "lm" / "lm.arpa").unlink()
    args.overrides = ["lm.order=0"]
    assert lm_command.run(args) == 0
    assert not (tmp_path / "exp" / "lm" / "lm.arpa").exists()
