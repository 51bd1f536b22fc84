"""Bad text and data dirs: non-UTF-8 lines named, Kaldi separators accepted, transcripts
without audio counted, one damaged FLAC skipped, a batch of only skipped utterances no step."""
from __future__ import annotations

import logging

import pytest

from speechforge.cli import main
from speechforge.data.data_dir import read_data_dir, read_table
from speechforge.data.librispeech import prepare_librispeech
from speechforge.errors import DataError
from tests.data.test_data_dir import make_librispeech


def test_a_line_that_is_not_utf8_is_named_with_file_and_line(tmp_path, capsys):
    text = tmp_path / "text"
    text.write_bytes(b"utt1 HELLO\nutt2 CAF\xe9\n")
    with pytest.raises(DataError, match=r"text:2: not UTF-8 \(byte 0xe9 at column 9\)"):
        read_table(text)
    (tmp_path / "conf.yaml").write_text("tokenizer: {type: char}\n")
    assert main(["tokenizer", "--config", str(tmp_path / "conf.yaml"), "--text", str(text), "--exp-dir", str(tmp_path / "exp")]) == 2
    assert capsys.readouterr().err == f"speechforge tokenizer: error: {text}:2: not UTF-8 (byte 0xe9 at column 9); convert the file to UTF-8\n"


def test_tabs_and_several_spaces_separate_keys_as_in_kaldi(tmp_path):
    table = tmp_path / "text"
    table.write_text("utt1\tHELLO WORLD\nutt2   GOOD  MORNING \nutt3 \t X\n")
    assert read_table(table) == {"utt1": "HELLO WORLD", "utt2": "GOOD  MORNING", "utt3": "X"}


def test_a_transcript_without_audio_is_counted_and_left_out(tiny_data_dir, caplog):
    with open(tiny_data_dir / "text", "a") as f:
        f.write("zz-orphan1 HELLO\nzz-orphan2 WORLD\n")
    with caplog.at_level(logging.WARNING):
        utterances = read_data_dir(tiny_data_dir)
    assert "zz-orphan1" not in {u.utt_id for u in utterances} and len(utterances) == 8
    assert "2 utterances have no audio in wav.scp and are left out (first: zz-orphan1, zz-orphan2)" in caplog.text


def test_one_damaged_flac_is_skipped_not_the_split(tmp_path, caplog):
    chapter = make_librispeech(tmp_path)
    (chapter / "84-121123-0001.flac").write_bytes(b"not a flac at all")
    with caplog.at_level(logging.WARNING):
        assert prepare_librispeech(tmp_path, ["dev-clean"], tmp_path / "data") == {"dev-clean": 1}
    assert "skipped 1 unreadable FLAC files: " in caplog.text and "84-121123-0001.flac: unreadable audio" in caplog.text


def test_a_batch_whose_every_utterance_was_skipped_takes_no_step(tmp_path, tiny_data_dir):
    from speechforge.train.trainer import Trainer
    from tests.train.test_trainer import CONFIG, make_experiment

    exp, _ = make_experiment(tmp_path, tiny_data_dir, "skipped")
    for audio in read_table(tiny_data_dir / "wav.scp").values():
        open(audio, "wb").write(b"damaged after prepare")  # utt2dur still lists it
    trainer = Trainer({**CONFIG, "data": {**CONFIG["data"], "train": str(tiny_data_dir)}, "train": {**CONFIG["train"], "max_epochs": 1}}, exp)
    trainer.train()
    assert trainer.state.step == 0 and trainer.skips.total() == 8


def test_characters_the_tokenizer_cannot_write_are_counted_at_the_start_of_training(tmp_path, tiny_data_dir, caplog):
    from speechforge.text.char_tokenizer import CharTokenizer
    from speechforge.train.trainer import Trainer
    from tests.train.test_trainer import CONFIG

    exp = tmp_path / "exp"
    CharTokenizer.train([u.text for u in read_data_dir(tiny_data_dir)]).save(exp / "tokenizer")  # upper-case units
    text = tiny_data_dir / "text"
    rows = read_table(text)
    first = sorted(rows)[0]
    text.write_text("".join(f"{k} {v.lower() if k == first else v}\n" for k, v in sorted(rows.items())))
    config = {**CONFIG, "data": {**CONFIG["data"], "train": str(tiny_data_dir)}}
    with caplog.at_level(logging.WARNING):
        Trainer(config, exp)
    lowered = rows[first].lower().replace(" ", "")
    assert f"{text}: {len(set(lowered))} characters the tokenizer does not know (encoded as <unk>): " in caplog.text
    assert f" x{max(lowered.count(c) for c in lowered)}" in caplog.text  # counted per character
    assert "the tokenizer knows their upper-case forms" in caplog.text
    with pytest.raises(DataError, match=r"characters the tokenizer does not know .*\(data\.unknown_characters: error\)"):
        Trainer({**config, "data": {**config["data"], "unknown_characters": "error"}}, exp)


def test_scoring_counts_references_without_a_hypothesis(tmp_path, caplog):
    decode_dir = tmp_path / "exp" / "decode" / "dev" / "ctc_greedy_search"
    decode_dir.mkdir(parents=True)
    (decode_dir / "ref").write_text("u1 HELLO\nu2 WORLD\n")
    (decode_dir / "hyp").write_text("u1 HELLO\n")
    (decode_dir / "decode.json").write_text('{"rtf": 0.1}')
    with caplog.at_level(logging.WARNING):
        assert main(["score", "--exp-dir", str(tmp_path / "exp")]) == 0
    assert "1 utterances have no hypothesis and count as deleted (first: u2)" in caplog.text
