"""A decode writes hypotheses as it goes: a crash part-way keeps the finished utterances, and a
rerun decodes only the rest and ends with the same ``hyp`` as an uninterrupted decode."""
from __future__ import annotations

import pytest

from speechforge.cli import main
from speechforge.data.data_dir import read_table
from speechforge.decode.partial_hypotheses import read_partial
from speechforge.decode.recognizer import Recognizer


class Crash(Exception):
    pass


def test_a_rerun_after_a_crash_continues_and_matches_a_straight_decode(untrained_experiment, tiny_config, tiny_data_dir, monkeypatch):
    exp = untrained_experiment(tiny_config, {"methods": ["ctc_greedy_search"]})
    command = ["decode", "--exp-dir", str(exp), "--data", str(tiny_data_dir), "--max-seconds", "3"]
    assert main(command) == 0
    out_dir = exp / "decode" / tiny_data_dir.name / "ctc_greedy_search"
    straight = (out_dir / "hyp").read_text()
    assert not (out_dir / "hyp.partial").exists()
    (out_dir / "hyp").unlink()

    real_texts = Recognizer.texts
    decoded: list[int] = []

    def crash_on_second_batch(self, search, encoder_out, encoder_lens):
        if len(decoded) == 1:
            raise Crash
        decoded.append(len(encoder_lens))
        return real_texts(self, search, encoder_out, encoder_lens)

    monkeypatch.setattr(Recognizer, "texts", crash_on_second_batch)
    with pytest.raises(Crash):
        main(command)
    kept = read_partial(out_dir / "hyp.partial")
    assert len(kept) == decoded[0] and not (out_dir / "hyp").exists()

    def count(self, search, encoder_out, encoder_lens):
        decoded.append(len(encoder_lens))
        return real_texts(self, search, encoder_out, encoder_lens)

    monkeypatch.setattr(Recognizer, "texts", count)
    assert main(command) == 0
    assert sum(decoded[1:]) == 8 - len(kept)  # only what was missing
    assert (out_dir / "hyp").read_text() == straight
    assert not (out_dir / "hyp.partial").exists()


def test_a_torn_last_partial_line_is_decoded_again(tmp_path):
    path = tmp_path / "hyp.partial"
    path.write_text("u1 HELLO\nu2 \nu3 WOR")
    assert read_partial(path) == {"u1": "HELLO", "u2": ""}


def test_an_utterance_longer_than_the_limit_is_refused_naming_it_and_its_length(untrained_experiment, tiny_config, tiny_data_dir, caplog):
    import logging

    import torch

    from speechforge.data.data_dir import read_data_dir
    from speechforge.errors import DataError

    exp = untrained_experiment(tiny_config, {"methods": ["ctc_greedy_search"], "max_utterance_seconds": 1.2})
    longest = max(read_data_dir(tiny_data_dir), key=lambda u: u.duration)
    assert longest.duration > 1.2
    with caplog.at_level(logging.WARNING):
        assert main(["decode", "--exp-dir", str(exp), "--data", str(tiny_data_dir)]) == 0
    assert f"skipping {longest.utt_id}: {longest.duration:.1f} s, longer than decode.max_utterance_seconds (1.2 s)" in caplog.text
    hyps = read_table(exp / "decode" / tiny_data_dir.name / "ctc_greedy_search" / "hyp", allow_empty_values=True)
    assert hyps[longest.utt_id] == "" and len(hyps) == 8
    with pytest.raises(DataError, match=r"the waveform: 10.0 s, longer than decode.max_utterance_seconds \(1.2 s\)"):
        Recognizer(exp).transcribe(torch.zeros(160000))
