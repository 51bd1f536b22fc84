"""Bad items are skipped and counted, never a crash; batches pad correctly."""
from __future__ import annotations

import logging

import numpy as np
import soundfile

from speechforge.data.data_dir import read_data_dir
from speechforge.data.speech_dataset import Example, SkipCounter, Skipped, SpeechDataset, collate, filter_utterances
from speechforge.text.char_tokenizer import CharTokenizer


def test_bad_items_are_skipped_with_counts_and_ids(tiny_data_dir, caplog):
    utts = read_data_dir(tiny_data_dir)
    open(utts[0].audio, "wb").write(b"not audio at all")
    soundfile.write(utts[1].audio, np.zeros(800, dtype=np.float32), 8000)
    utts[2] = utts[2].__class__(utts[2].utt_id, utts[2].audio, "  ", utts[2].speaker, utts[2].duration)
    utts[3] = utts[3].__class__(utts[3].utt_id, utts[3].audio, utts[3].text, utts[3].speaker, 99.0)
    counter = SkipCounter()
    kept = filter_utterances(utts, max_duration=30, min_duration=0.1, counter=counter)
    assert len(kept) == 6
    dataset = SpeechDataset(kept, CharTokenizer.train([u.text for u in utts]), 16000)
    with caplog.at_level(logging.WARNING):
        items = [dataset[i] for i in range(len(dataset))]
        for item in items:
            if isinstance(item, Skipped):
                counter.add(item)
    assert counter.total() == 4
    reasons = " ".join(counter.counts)
    assert "empty transcript" in reasons and "longer than 30" in reasons
    assert "unreadable audio" in reasons and "sample rate 8000 Hz, expected 16000 Hz" in reasons
    assert utts[0].utt_id in caplog.text and utts[1].utt_id in caplog.text
    batch = collate(items)
    assert len(batch.utt_ids) == 4 and len(batch.skipped) == 2


def test_collate_pads_speech_with_zeros_and_targets_with_minus_one(tiny_data_dir):
    utts = read_data_dir(tiny_data_dir)[:3]
    dataset = SpeechDataset(utts, CharTokenizer.train([u.text for u in utts]), 16000)
    items = [dataset[i] for i in range(3)]
    batch = collate(items)
    assert all(isinstance(i, Example) for i in items)
    for row, item in enumerate(items):
        n, u = item.speech.numel(), len(item.tokens)
        assert batch.speech_lens[row] == n and batch.target_lens[row] == u
        assert (batch.speech[row, n:] == 0).all() and (batch.targets[row, u:] == -1).all()
        assert batch.targets[row, :u].tolist() == item.tokens


def test_speed_perturbation_is_deterministic_per_epoch(tiny_data_dir):
    utts = read_data_dir(tiny_data_dir)
    tok = CharTokenizer.train([u.text for u in utts])
    a = SpeechDataset(utts, tok, 16000, speed_perturb=[0.9, 1.1], seed=3)
    b = SpeechDataset(utts, tok, 16000, speed_perturb=[0.9, 1.1], seed=3)
    lengths = [(a[i].speech.numel(), b[i].speech.numel()) for i in range(len(utts))]
    assert all(x == y for x, y in lengths)
    plain = [read_data_dir(tiny_data_dir)[i].duration * 16000 for i in range(len(utts))]
    assert any(abs(x - p) > 100 for (x, _), p in zip(lengths, plain))
