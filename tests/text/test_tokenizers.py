"""Tokenizers: reserved ids, round trips, save/load."""
from __future__ import annotations

import pytest

from speechforge.errors import ConfigError
from speechforge.text.bpe_tokenizer import BPETokenizer
from speechforge.text.char_tokenizer import CharTokenizer
from speechforge.text.tokenizer import load_tokenizer

TEXTS = ["THE QUICK BROWN FOX", "JUMPS OVER THE LAZY DOG", "A QUICK MOVEMENT OF THE ENEMY"] * 30


@pytest.mark.parametrize("make", [lambda: BPETokenizer.train(TEXTS, 48), lambda: CharTokenizer.train(TEXTS)])
def test_round_trip_reserved_ids_and_reload(make, tmp_path):
    tok = make()
    ids = tok.encode("THE LAZY FOX")
    assert ids and all(0 < i < tok.vocab_size - 1 for i in ids)
    assert tok.decode(ids) == "THE LAZY FOX"
    assert tok.decode([0, *ids, tok.vocab_size - 1]) == "THE LAZY FOX"
    tok.save(tmp_path / "tok")
    again = load_tokenizer(tmp_path / "tok")
    assert again.vocab_size == tok.vocab_size and again.encode("THE LAZY FOX") == ids


def test_bpe_vocab_size_counts_every_output_id():
    assert BPETokenizer.train(TEXTS, 48).vocab_size == 48


def test_bpe_errors_name_the_key():
    with pytest.raises(ConfigError, match="tokenizer.vocab_size"):
        BPETokenizer.train(TEXTS, 5000)
    with pytest.raises(ConfigError, match="no non-empty transcripts"):
        BPETokenizer.train(["", " "], 40)


def test_unknown_characters_map_to_unk():
    assert CharTokenizer.train(["AB"]).encode("AZ") == [2, 1]


def test_load_names_the_bad_file(tmp_path):
    (tmp_path / "tokenizer.json").write_text('{"type": "wordpiece"}')
    with pytest.raises(ConfigError, match="tokenizer.json: unknown tokenizer type 'wordpiece'"):
        load_tokenizer(tmp_path)
