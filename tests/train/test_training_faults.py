"""Training faults: a non-finite gradient skips the step, pruning keeps what ``latest`` names,
a used experiment dir is refused without --resume/--overwrite, --resume checks before writing,
the process-group timeout is configurable and a group that cannot start is one line, CUDA
random states travel with the checkpoint."""
from __future__ import annotations

import datetime

import pytest
import torch
import yaml

from speechforge.builder import build_model
from speechforge.cli import main
from speechforge.errors import CheckpointError, RankFailure
from speechforge.train import distributed
from speechforge.train.checkpoint import load_checkpoint, save_checkpoint
from speechforge.train.checkpointer import Checkpointer, restore_rng_states, rng_states
from speechforge.train.trainer import Trainer, TrainingAborted
from tests.train.test_trainer import CONFIG, make_experiment


def one_step_config(data, **train):
    return {**CONFIG, "data": {**CONFIG["data"], "train": str(data)}, "train": {**CONFIG["train"], "max_steps": 1, **train}}


def test_a_non_finite_gradient_with_a_finite_loss_skips_the_step(tmp_path, tiny_data_dir, monkeypatch):
    exp, _ = make_experiment(tmp_path, tiny_data_dir, "nan_grad")
    trainer = Trainer(one_step_config(tiny_data_dir, max_bad_steps=2), exp)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    weight = next(trainer.model.parameters())
    weight.register_hook(lambda grad: torch.full_like(grad, float("inf")))  # the loss stays finite
    with pytest.raises(TrainingAborted, match="2 non-finite losses in a row at step 0"):
        trainer.train()
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if "num_batches" not in k and "running" not in k)


def test_pruning_never_removes_the_checkpoint_latest_names(tmp_path, tiny_config):
    model = build_model(tiny_config)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    from speechforge.plugins import default_host
    from speechforge.train.parallel_strategy import make_strategy

    strategy = make_strategy("ddp", distributed.init_distributed())
    checkpoints = tmp_path / "checkpoints"
    for step in (10, 12):  # a previous, longer run left newer files
        save_checkpoint({"model": {}}, checkpoints / f"step_{step}.pt")
    checkpointer = Checkpointer(checkpoints, strategy, model, optimizer, scheduler, torch.amp.GradScaler("cpu", enabled=False), default_host(), 2, True)
    from speechforge.train.training_state import TrainingState

    checkpointer.save("step_4", TrainingState(step=4))
    assert checkpointer.latest() == checkpoints / "step_4.pt"
    assert sorted(p.name for p in checkpoints.glob("step_*.pt")) == ["step_12.pt", "step_4.pt"]


def test_a_second_train_into_a_used_exp_dir_needs_resume_or_overwrite(tmp_path, tiny_data_dir, capsys):
    exp, conf = make_experiment(tmp_path, tiny_data_dir, "used")
    conf.write_text(yaml.safe_dump(one_step_config(tiny_data_dir, max_epochs=1, save_interval_steps=0)))
    assert main(["train", "--config", str(conf), "--exp-dir", str(exp)]) == 0
    first = (exp / "train_log.jsonl").read_text()
    assert main(["train", "--config", str(conf), "--exp-dir", str(exp)]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err == f"speechforge train: error: {exp}: holds a run ({exp / 'checkpoints' / 'latest'} exists); continue it with --resume or replace it with --overwrite"
    assert (exp / "train_log.jsonl").read_text() == first  # nothing touched
    assert main(["train", "--config", str(conf), "--exp-dir", str(exp), "--overwrite"]) == 0
    assert len((exp / "train_log.jsonl").read_text().splitlines()) == len(first.splitlines())  # replaced, not appended


def test_resume_with_a_config_of_another_shape_fails_before_writing(tmp_path, tiny_data_dir):
    exp, _ = make_experiment(tmp_path, tiny_data_dir, "resume")
    config = one_step_config(tiny_data_dir, max_epochs=1)
    Trainer(config, exp).train()
    saved = (exp / "config.yaml").read_text()
    wider = {**config, "encoder": {**config["encoder"], "d_model": 24}}
    with pytest.raises(CheckpointError, match=r"a model of another shape \(checkpoint vs model\): .*\(16,\) vs \(24,\)"):
        Trainer(wider, exp, resume=True)
    assert (exp / "config.yaml").read_text() == saved


def test_the_process_group_timeout_comes_from_the_config(monkeypatch):
    seen = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend, timeout: seen.update(timeout=timeout))
    distributed.init_distributed(timeout_s=30)
    assert seen["timeout"] == datetime.timedelta(seconds=30)


def test_a_process_group_that_cannot_start_is_one_line(monkeypatch):
    from tests.train.test_ddp_faults import free_port

    for name, value in {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(RankFailure, match=r"^rank 0: the process group of 2 ranks did not start \(DistStoreError: .*1/2 clients joined"):
        distributed.init_distributed(timeout_s=1)  # rank 1 never comes
    monkeypatch.delenv("MASTER_ADDR")
    with pytest.raises(RankFailure, match=r"did not start \(ValueError: .*MASTER_ADDR.*\); start every rank with the same MASTER_ADDR"):
        distributed.init_distributed(timeout_s=1)
    assert not distributed.dist.is_initialized()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_random_states_are_saved_and_restored(tmp_path):
    torch.cuda.manual_seed_all(3)
    torch.rand(1, device="cuda")
    save_checkpoint({"model": {}, "rng": rng_states()}, tmp_path / "step_1.pt")
    expected = torch.rand(4, device="cuda")
    torch.rand(100, device="cuda")
    states = load_checkpoint(tmp_path / "step_1.pt")["rng"]  # weights_only=True takes them
    assert len(states["cuda"]) == torch.cuda.device_count()
    restore_rng_states(states)
    assert torch.equal(torch.rand(4, device="cuda"), expected)
    restore_rng_states({**states, "cuda": states["cuda"] * 2})  # saved on more devices than here
    assert torch.equal(torch.rand(4, device="cuda"), expected)
