"""Checkpoints: atomic writes, weights_only loading, clear errors, averaging."""
from __future__ import annotations

import pytest
import torch

from speechforge.errors import CheckpointError
from speechforge.train.checkpoint import average_checkpoints, load_checkpoint, load_model_weights, save_checkpoint
from speechforge.train.scheduler import Schedule, lr_factor


def test_save_is_atomic_and_loads_with_weights_only(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint({"model": {"w": torch.ones(2)}}, path)
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k) or real_load(*a, **k))
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))
    assert calls[0]["weights_only"] is True
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]
    assert path.stat().st_mode & 0o777 == 0o644  # readable by all, not mkstemp's 0600


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint({"model": {"w": torch.zeros(1)}}, path)
    with pytest.raises(Exception):
        save_checkpoint({"model": {"w": lambda: None}}, path)  # not picklable
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.zeros(1))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_corrupted_and_foreign_files_are_named(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint({"model": {"w": torch.ones(1000)}}, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="ckpt.pt: corrupted"):
        load_checkpoint(path)
    torch.save({"weights": 1}, path)
    with pytest.raises(CheckpointError, match="no 'model' entry"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="missing.pt: no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_code_in_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": print}, path)
    with pytest.raises(CheckpointError, match="evil.pt: corrupted or not a speechforge checkpoint"):
        load_checkpoint(path)


def test_mismatching_weights_name_keys(tmp_path):
    with pytest.raises(CheckpointError, match=r"x.pt: does not fit the model: missing \['weight', 'bias'\]"):
        load_model_weights(torch.nn.Linear(2, 2), {"other": torch.ones(1)}, tmp_path / "x.pt")


def test_average_is_elementwise_mean_and_keeps_integers(tmp_path):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.pt")
        save_checkpoint({"model": {"w": torch.full((2,), float(i)), "n": torch.tensor(i)}}, paths[-1])
    avg = average_checkpoints(paths)
    assert torch.equal(avg["w"], torch.ones(2)) and avg["n"].item() == 2


def test_schedules():
    assert lr_factor(50, "cosine", 100, 1000, 0.1) == pytest.approx(0.5)
    assert lr_factor(100, "cosine", 100, 1000, 0.1) == pytest.approx(1.0)
    assert lr_factor(1000, "cosine", 100, 1000, 0.1) == pytest.approx(0.1)
    assert lr_factor(550, "linear", 100, 1000, 0.0) == pytest.approx(0.5)
    assert lr_factor(400, "noam", 100, 1000, 0.0) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown schedule 'cosin'"):
        Schedule("cosin", 10, 100, 0.0)


def test_time_budget_decays_whichever_comes_first():
    schedule = Schedule("cosine", 10, 1000, 0.0)
    early = schedule(100)
    schedule.time_fraction = 1.0
    assert schedule(100) == pytest.approx(0.0) and early > 0.9
    schedule.time_fraction = 0.01
    assert schedule(100) == pytest.approx(early)  # steps are further along than time
    assert schedule(5) == pytest.approx(0.5)  # warm-up is counted in steps only


def test_plugin_entries_survive_average_and_export(tmp_path, tiny_config):
    from speechforge.builder import build_model
    from speechforge.cli import main
    from speechforge.config import save_config
    from speechforge.text.char_tokenizer import CharTokenizer

    model = build_model(tiny_config)
    save_config(tiny_config, tmp_path / "config.yaml")
    CharTokenizer.train(["ABC"]).save(tmp_path / "tokenizer")
    for epoch in (1, 2):
        state = {"model": model.state_dict(), "progress": {"step": epoch}, "my_plugin": {"scale": torch.tensor([float(epoch)])}}
        save_checkpoint(state, tmp_path / "checkpoints" / f"epoch_{epoch}.pt")
    assert main(["average", "--exp-dir", str(tmp_path), "--num", "2"]) == 0
    averaged = load_checkpoint(tmp_path / "model_avg.pt")
    assert torch.equal(averaged["my_plugin"]["scale"], torch.tensor([2.0])) and "progress" not in averaged
    assert main(["export", "--exp-dir", str(tmp_path)]) == 0
    exported = load_checkpoint(tmp_path / "export" / "model.pt")
    assert torch.equal(exported["my_plugin"]["scale"], torch.tensor([2.0])) and "averaged" not in exported
