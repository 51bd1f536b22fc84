"""The trainer end to end on a tiny corpus: exact resume after SIGKILL, non-finite steps,
DDP with two gloo processes, bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from speechforge.data.data_dir import read_data_dir
from speechforge.errors import ConfigError
from speechforge.text.char_tokenizer import CharTokenizer
from speechforge.train.checkpoint import load_checkpoint

PROCESS_GROUP_LEAK = "still referenced after closing"  # close_distributed's warning

PROBE = '''
import os
import signal
import torch
import torch.distributed as dist
import speechforge


@speechforge.hookimpl
def after_train_step(model, step, losses):
    """Test probe: record a parameter checksum per rank; send ourselves SF_SIGNAL (SIGKILL when
    not given) at step SF_KILL_AT_STEP, on rank SF_KILL_RANK only when that is given."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    probe_dir = os.environ.get("SF_PROBE_DIR")
    if probe_dir:
        total = sum(float(p.detach().double().sum()) for p in model.parameters())
        with open(os.path.join(probe_dir, f"rank{rank}_step{step}"), "w") as f:
            f.write(repr(total))
    if os.environ.get("SF_KILL_AT_STEP") == str(step) and os.environ.get("SF_KILL_RANK", str(rank)) == str(rank):
        os.kill(os.getpid(), getattr(signal, os.environ.get("SF_SIGNAL", "SIGKILL")))
    return None
'''

CONFIG = {
    "frontend": {"type": "fbank", "num_mel_bins": 40, "spec_augment": {"num_time_masks": 1, "max_time_width": 5}},
    "encoder": {
        "type": "conformer", "d_model": 16, "heads": 2, "num_blocks": 1, "dropout": 0.1,
        "ffn": {"type": "dense", "hidden": 32}, "encoder_block": {"type": "conformer", "conv_kernel": 3},
    },
    "losses": [{"type": "ctc", "weight": 1.0}],
    "data": {"max_seconds": 4.0, "num_workers": 0},
    "optim": {"lr": 3e-3},
    "scheduler": {"type": "constant", "warmup_steps": 2},
    "train": {"max_epochs": 2, "save_interval_steps": 2, "progress_bar": False, "seed": 7},
}


@pytest.fixture
def probe_path(tmp_path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sf_probe.py").write_text(textwrap.dedent(PROBE))
    info = site / "sf_probe-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sf-probe\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[speechforge.plugins]\nprobe = sf_probe\n")
    return site


def make_experiment(root: Path, data: Path, name: str, config: dict = CONFIG) -> tuple[Path, Path]:
    exp = root / name
    CharTokenizer.train([u.text for u in read_data_dir(data)]).save(exp / "tokenizer")
    conf = root / f"{name}.yaml"
    conf.write_text(yaml.safe_dump({**config, "data": {**config["data"], "train": str(data), "valid": str(data)}}))
    return exp, conf


def train(conf: Path, exp: Path, probe: Path, *extra: str, env: dict | None = None, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(probe), "OMP_NUM_THREADS": "1", **(env or {})}
    command = (launcher or [sys.executable, "-m", "speechforge.cli"]) + ["train", "--config", str(conf), "--exp-dir", str(exp), *extra]
    return subprocess.run(command, capture_output=True, text=True, env=environ, timeout=600)


@pytest.mark.slow
def test_resume_after_sigkill_ends_with_identical_parameters(tmp_path, tiny_data_dir, probe_path):
    straight, conf = make_experiment(tmp_path, tiny_data_dir, "straight")
    done = train(conf, straight, probe_path)
    assert done.returncode == 0, done.stderr

    killed, conf2 = make_experiment(tmp_path, tiny_data_dir, "killed")
    crash = train(conf2, killed, probe_path, env={"SF_KILL_AT_STEP": "3"})
    assert crash.returncode == -signal.SIGKILL
    assert (killed / "checkpoints" / "latest").read_text().strip() == "step_2.pt"
    resumed = train(conf2, killed, probe_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr

    a = load_checkpoint(straight / "checkpoints" / "epoch_2.pt")
    b = load_checkpoint(killed / "checkpoints" / "epoch_2.pt")
    assert a["progress"]["step"] == b["progress"]["step"] > 3
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for key, value in a["optimizer"]["state"].items():
        assert torch.equal(value["exp_avg"], b["optimizer"]["state"][key]["exp_avg"])


@pytest.mark.slow
def test_budget_stop_mid_epoch_keeps_the_final_model_and_resumes_exactly(tmp_path, tiny_data_dir, probe_path):
    straight, conf = make_experiment(tmp_path, tiny_data_dir, "straight")
    assert train(conf, straight, probe_path).returncode == 0
    epoch_steps = [load_checkpoint(straight / "checkpoints" / f"epoch_{k}.pt")["progress"]["step"] for k in (1, 2)]
    stop = epoch_steps[0] + 1
    assert stop < epoch_steps[1], epoch_steps

    stopped, conf2 = make_experiment(tmp_path, tiny_data_dir, "stopped")
    done = train(conf2, stopped, probe_path, f"train.max_steps={stop}")
    assert done.returncode == 0, done.stderr
    partial = load_checkpoint(stopped / "checkpoints" / "epoch_2.pt")
    assert partial["progress"]["step"] == stop and partial["progress"]["epoch"] == 1  # still mid-epoch
    last = json.loads((stopped / "train_log.jsonl").read_text().splitlines()[-1])
    assert last["partial"] and last["epoch"] == 2 and last["step"] == stop and last["valid_loss"] > 0

    resumed = train(conf2, stopped, probe_path, "--resume", "train.max_steps=0")
    assert resumed.returncode == 0, resumed.stderr
    a = load_checkpoint(straight / "checkpoints" / "epoch_2.pt")
    b = load_checkpoint(stopped / "checkpoints" / "epoch_2.pt")
    assert a["progress"] == {**b["progress"], "elapsed": a["progress"]["elapsed"]}
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


@pytest.mark.slow
def test_ddp_two_gloo_processes_stay_in_sync(tmp_path, tiny_data_dir, probe_path):
    exp, conf = make_experiment(tmp_path, tiny_data_dir, "ddp")
    probes = tmp_path / "probes"
    probes.mkdir()
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "speechforge.cli"]
    done = train(conf, exp, probe_path, "train.max_epochs=1", env={"SF_PROBE_DIR": str(probes)}, launcher=launcher)
    assert done.returncode == 0, done.stderr[-3000:]
    assert PROCESS_GROUP_LEAK not in done.stderr  # its gloo threads must not outlive Python
    rank0 = sorted(p.name.split("_")[1] for p in probes.glob("rank0_*"))
    rank1 = sorted(p.name.split("_")[1] for p in probes.glob("rank1_*"))
    assert rank0 and rank0 == rank1
    for step in rank0:
        assert (probes / f"rank0_{step}").read_text() == (probes / f"rank1_{step}").read_text()
    assert (exp / "checkpoints" / "epoch_1.pt").is_file()
    steps = [json.loads(line)["step"] for line in (exp / "train_log.jsonl").read_text().splitlines()]
    assert max(steps) == len(rank0)


def test_non_finite_losses_are_skipped_then_abort(tmp_path, tiny_data_dir, monkeypatch):
    from speechforge.train.trainer import Trainer, TrainingAborted

    exp, _ = make_experiment(tmp_path, tiny_data_dir, "nan")
    config = {**CONFIG, "data": {**CONFIG["data"], "train": str(tiny_data_dir)}, "train": {**CONFIG["train"], "max_bad_steps": 3}}
    trainer = Trainer(config, exp)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    real_forward = trainer.model.forward
    monkeypatch.setattr(trainer.wrapped, "forward", lambda batch, progress=None: {**real_forward(batch, progress), "loss": torch.tensor(float("nan"), requires_grad=True)})
    with pytest.raises(TrainingAborted, match="3 non-finite losses in a row at step 0"):
        trainer.train()
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if "num_batches" not in k and "running" not in k)


def test_config_errors_name_the_key(tmp_path, tiny_data_dir):
    from speechforge.train.trainer import Trainer

    exp, _ = make_experiment(tmp_path, tiny_data_dir, "bad")
    with pytest.raises(ConfigError, match=r"train\.max_epoch: unknown key; did you mean max_epochs\?"):
        Trainer({**CONFIG, "train": {"max_epoch": 3}}, exp)
    with pytest.raises(ConfigError, match="data.train: missing"):
        Trainer(CONFIG, exp)


@pytest.mark.slow
def test_fsdp_on_gloo_saves_full_checkpoints_and_resumes(tmp_path, tiny_data_dir, probe_path):
    from speechforge.builder import build_model
    from speechforge.config import load_config

    exp, conf = make_experiment(tmp_path, tiny_data_dir, "fsdp")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "speechforge.cli"]
    first = train(conf, exp, probe_path, "train.max_epochs=1", "train.strategy=fsdp", launcher=launcher)
    assert first.returncode == 0, first.stderr[-3000:]
    again = train(conf, exp, probe_path, "--resume", "train.max_epochs=2", "train.strategy=fsdp", launcher=launcher)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from" in again.stderr
    for run in (first, again):  # FSDP's state and DTensor caches let go of the group at the end
        assert PROCESS_GROUP_LEAK not in run.stderr
    state = load_checkpoint(exp / "checkpoints" / "epoch_2.pt")
    model = build_model(load_config(exp / "config.yaml"))
    model.load_state_dict(state["model"])  # plain tensors: loads into an unsharded model
    assert state["progress"]["epoch"] == 2
