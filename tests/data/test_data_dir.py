"""Data dirs and LibriSpeech preparation: round trips and errors naming file and line."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile

from speechforge.data.data_dir import read_data_dir, read_table
from speechforge.data.librispeech import prepare_librispeech
from speechforge.errors import DataError


def test_round_trip(tiny_data_dir):
    utts = read_data_dir(tiny_data_dir)
    assert len(utts) == 8
    assert [u.utt_id for u in utts] == sorted(u.utt_id for u in utts)
    assert all(u.duration > 0.5 for u in utts)


def test_duplicate_and_empty_values_name_file_and_line(tmp_path):
    table = tmp_path / "wav.scp"
    table.write_text("a x.flac\nb y.flac\na z.flac\n")
    with pytest.raises(DataError, match=r"wav.scp:3: utterance 'a' appears twice"):
        read_table(table)
    table.write_text("a x.flac\nb\n")
    with pytest.raises(DataError, match=r"wav.scp:2: utterance 'b' has no value"):
        read_table(table)


def test_missing_transcript_entry_is_named(tiny_data_dir):
    text = tiny_data_dir / "text"
    lines = text.read_text().splitlines()
    text.write_text("\n".join(lines[1:]) + "\n")
    missing = lines[0].split()[0]
    with pytest.raises(DataError, match=rf"text: no entry for utterance '{missing}' of wav.scp"):
        read_data_dir(tiny_data_dir)


def test_untranscribed_audio_needs_only_wav_scp_and_utt2dur(tiny_data_dir):
    full = read_data_dir(tiny_data_dir)
    (tiny_data_dir / "text").unlink()
    (tiny_data_dir / "utt2spk").unlink()
    with pytest.raises(DataError, match=r"text: missing"):
        read_data_dir(tiny_data_dir)
    audio = read_data_dir(tiny_data_dir, transcripts=False)
    assert [(u.utt_id, u.audio, u.duration) for u in audio] == [(u.utt_id, u.audio, u.duration) for u in full]
    assert all(u.text == "" and u.speaker == "" for u in audio)
    lines = (tiny_data_dir / "utt2dur").read_text().splitlines()
    (tiny_data_dir / "utt2dur").write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(DataError, match=rf"utt2dur: no entry for utterance '{full[0].utt_id}'"):
        read_data_dir(tiny_data_dir, transcripts=False)


def test_cmvn_needs_only_the_audio(tiny_data_dir):
    from speechforge.data.cmvn import compute_cmvn
    from speechforge.registry import build_component

    frontend = build_component("frontend", {"type": "fbank", "num_mel_bins": 40}, "frontend")
    full = compute_cmvn(tiny_data_dir, frontend, max_utterances=2)
    (tiny_data_dir / "text").unlink()
    (tiny_data_dir / "utt2spk").unlink()
    assert compute_cmvn(tiny_data_dir, frontend, max_utterances=2) == full


def make_librispeech(root, split="dev-clean"):
    chapter = root / "LibriSpeech" / split / "84" / "121123"
    chapter.mkdir(parents=True)
    lines = []
    for i, text in enumerate(["HELLO WORLD", "GOOD MORNING"]):
        utt = f"84-121123-{i:04d}"
        soundfile.write(chapter / f"{utt}.flac", np.zeros(8000 * (i + 1), dtype=np.float32), 16000)
        lines.append(f"{utt} {text}")
    (chapter / "84-121123.trans.txt").write_text("\n".join(lines) + "\n")
    return chapter


def test_librispeech_layout_to_data_dir(tmp_path):
    make_librispeech(tmp_path)
    counts = prepare_librispeech(tmp_path, ["dev-clean"], tmp_path / "data")
    assert counts == {"dev-clean": 2}
    utts = read_data_dir(tmp_path / "data" / "dev-clean")
    assert [(u.utt_id, u.text, u.speaker, u.duration) for u in utts] == [
        ("84-121123-0000", "HELLO WORLD", "84", 0.5),
        ("84-121123-0001", "GOOD MORNING", "84", 1.0),
    ]


def test_missing_split_and_missing_audio_are_named(tmp_path):
    with pytest.raises(DataError, match="no LibriSpeech split 'test-clean'"):
        prepare_librispeech(tmp_path, ["test-clean"], tmp_path / "data")
    chapter = make_librispeech(tmp_path)
    (chapter / "84-121123-0001.flac").unlink()
    with pytest.raises(DataError, match=r"84-121123.trans.txt:2: 84-121123-0001.flac does not exist"):
        prepare_librispeech(tmp_path, ["dev-clean"], tmp_path / "data")
