"""Checkpoints that do not fit, averaging refusals, torn logs, full disks: one-line errors or
counted skips, and the previous checkpoint kept."""
from __future__ import annotations

import errno
import json
import logging
import os

import pytest
import torch

from speechforge.builder import build_model
from speechforge.cli import main
from speechforge.errors import CheckpointError
from speechforge.metrics.report import read_log
from speechforge.train.checkpoint import average_checkpoints, load_checkpoint, load_model_weights, save_checkpoint
from speechforge.train.run_log import RunLog, read_train_log


def test_a_checkpoint_of_another_vocabulary_names_the_key_and_both_shapes(tiny_config, tmp_path):
    other = build_model({**tiny_config, "vocab_size": 30}).state_dict()
    with pytest.raises(CheckpointError) as error:
        load_model_weights(build_model(tiny_config), other, tmp_path / "other.pt")
    assert str(error.value) == f"{tmp_path / 'other.pt'}: a model of another shape (checkpoint vs model): ctc.ctc_lo.weight: (30, 32) vs (20, 32); ctc.ctc_lo.bias: (30,) vs (20,)"


def test_decode_of_a_checkpoint_of_another_width_is_one_line(untrained_experiment, tiny_config, tiny_data_dir, capsys):
    exp = untrained_experiment(tiny_config, {"methods": ["ctc_greedy_search"]})
    wider = {**tiny_config, "vocab_size": 20, "encoder": {**tiny_config["encoder"], "d_model": 48}}
    save_checkpoint({"model": build_model(wider).state_dict()}, exp / "model_avg.pt")
    assert main(["decode", "--exp-dir", str(exp), "--data", str(tiny_data_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model_avg.pt: a model of another shape (checkpoint vs model): " in err
    assert "(48,) vs (32,)" in err or "48) vs (" in err


def test_averaging_checkpoints_of_two_shapes_names_the_file(tmp_path):
    save_checkpoint({"model": {"w": torch.ones(2, 3)}}, tmp_path / "epoch_1.pt")
    save_checkpoint({"model": {"w": torch.ones(2, 4)}}, tmp_path / "epoch_2.pt")
    with pytest.raises(CheckpointError, match=r"epoch_2.pt: not the model of .*epoch_1.pt .*w: \(2, 3\) vs \(2, 4\)"):
        average_checkpoints([tmp_path / "epoch_1.pt", tmp_path / "epoch_2.pt"])


def test_average_num_0_is_refused(tmp_path, capsys):
    save_checkpoint({"model": {"w": torch.ones(1)}}, tmp_path / "checkpoints" / "epoch_1.pt")
    assert main(["average", "--exp-dir", str(tmp_path), "--num", "0"]) == 2
    assert capsys.readouterr().err == "speechforge average: error: --num: how many checkpoints to average, at least 1, got 0\n"
    assert not (tmp_path / "model_avg.pt").exists()


def test_a_torn_last_log_line_is_skipped_with_a_warning_and_ended_by_the_next_append(tmp_path, caplog):
    log_path = tmp_path / "train_log.jsonl"
    log_path.write_text(json.dumps({"epoch": 1, "step": 4, "valid_loss": 2.0}) + "\n" + '{"epoch": 2, "st')
    with caplog.at_level(logging.WARNING):
        assert read_log(tmp_path) == [{"epoch": 1, "step": 4, "valid_loss": 2.0}]
    assert f"{log_path}:2: not a complete JSON record" in caplog.text
    run_log = RunLog(tmp_path, True, 1, False)
    run_log.record({"epoch": 2, "step": 8, "valid_loss": 1.0})
    run_log.close()
    assert [r["step"] for r in read_train_log(tmp_path)] == [4, 8]


def test_average_by_valid_loss_reads_past_a_torn_line(tmp_path, caplog):
    for epoch, value in ((1, 1.0), (2, 2.0)):
        save_checkpoint({"model": {"w": torch.full((1,), value)}}, tmp_path / "checkpoints" / f"epoch_{epoch}.pt")
    (tmp_path / "train_log.jsonl").write_text('{"epoch": 1, "valid_loss": 0.5}\n{"epoch": 2, "valid_loss": 0.9}\n{"epo')
    with caplog.at_level(logging.WARNING):
        assert main(["average", "--exp-dir", str(tmp_path), "--num", "1", "--by", "valid_loss"]) == 0
    assert "train_log.jsonl:3: not a complete JSON record" in caplog.text
    assert load_checkpoint(tmp_path / "model_avg.pt")["model"]["w"].item() == 1.0


def test_average_by_valid_loss_passes_over_a_nan_validation_loss(tmp_path):
    for epoch in (1, 2, 3):
        save_checkpoint({"model": {"w": torch.full((1,), float(epoch))}}, tmp_path / "checkpoints" / f"epoch_{epoch}.pt")
    log = [{"epoch": 1, "valid_loss": 0.9}, {"epoch": 2, "valid_loss": float("nan")}, {"epoch": 3, "valid_loss": 0.5}]
    (tmp_path / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))  # NaN, as json writes it
    assert main(["average", "--exp-dir", str(tmp_path), "--num", "2", "--by", "valid_loss"]) == 0
    assert load_checkpoint(tmp_path / "model_avg.pt")["averaged"] == ["epoch_1.pt", "epoch_3.pt"]


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "step_2.pt"
    save_checkpoint({"model": {"w": torch.zeros(1)}}, path)

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointError, match=r"step_2.pt: cannot write the checkpoint .*No space left on device.*what was there before is kept"):
        save_checkpoint({"model": {"w": torch.ones(1)}}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.zeros(1))
    assert [p.name for p in tmp_path.iterdir()] == ["step_2.pt"]


def test_a_missing_tokenizer_file_is_named(tmp_path):
    from speechforge.errors import ConfigError
    from speechforge.text.char_tokenizer import CharTokenizer
    from speechforge.text.tokenizer import load_tokenizer

    CharTokenizer.train(["AB"]).save(tmp_path / "tokenizer")
    (tmp_path / "tokenizer" / "units.txt").unlink()
    with pytest.raises(ConfigError, match=r"tokenizer/units.txt: cannot read the char tokenizer's file: No such file"):
        load_tokenizer(tmp_path / "tokenizer")


def test_a_full_disk_while_writing_a_small_file_is_one_line_and_keeps_it(tmp_path, monkeypatch, capsys):
    decode_dir = tmp_path / "decode" / "dev" / "ctc_greedy_search"
    decode_dir.mkdir(parents=True)
    (decode_dir / "ref").write_text("u1 HELLO\n")
    (decode_dir / "hyp").write_text("u1 HELLO\n")
    (decode_dir / "align.txt").write_text("from the last score\n")

    def full_disk(fd, *args, **kwargs):
        os.close(fd)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdopen", full_disk)
    assert main(["score", "--exp-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"speechforge score: error: {decode_dir / 'align.txt'}: No space left on device\n"
    assert (decode_dir / "align.txt").read_text() == "from the last score\n"
    assert sorted(p.name for p in decode_dir.iterdir()) == ["align.txt", "hyp", "ref"]  # no temporary file left
