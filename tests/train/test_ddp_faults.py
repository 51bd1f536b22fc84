"""DDP faults with two gloo ranks started as a cluster launcher (srun, mpirun) does, one process
each: a rank killed mid-run is named by the survivor, which ends within the process-group
timeout; a batch of only skipped utterances on one rank is skipped in step on every rank."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from speechforge.data.data_dir import read_data_dir, read_table
from speechforge.data.duration_batch_sampler import DurationBatchSampler
from speechforge.train.roll_call import ROLL_CALL_S
from tests.train.test_trainer import CONFIG, make_experiment, probe_path  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_ranks(conf: Path, exp: Path, probe: Path, *overrides: str, env: dict[str, str]) -> list[subprocess.Popen]:
    """``speechforge train`` as ranks 0 and 1 of one run, rendezvous over env://; rank R's
    stderr goes to ``EXP.rankR.err`` (pipes could fill and stall a rank)."""
    base = {
        **os.environ, "PYTHONPATH": str(probe), "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2", **env,
    }  # fmt: skip
    command = [sys.executable, "-m", "speechforge.cli", "train", "--config", str(conf), "--exp-dir", str(exp), *overrides]
    ranks = []
    for rank in (0, 1):
        with open(f"{exp}.rank{rank}.err", "w") as err:
            environ = {**base, "RANK": str(rank), "LOCAL_RANK": str(rank)}
            ranks.append(subprocess.Popen(command, env=environ, stdout=subprocess.DEVNULL, stderr=err))
    return ranks


def stderr_of(exp: Path, rank: int) -> str:
    return Path(f"{exp}.rank{rank}.err").read_text()


def test_a_killed_rank_is_named_by_the_survivor_within_the_timeout(tmp_path, tiny_data_dir, probe_path):
    """A hung rank (SIGSTOP) gets the same message after ``train.ddp_timeout_s``; not run here
    (it waits out a timeout), its gloo error is in tests/train/test_roll_call.py."""
    exp, conf = make_experiment(tmp_path, tiny_data_dir, "dead_rank")
    probes = tmp_path / "probes"
    probes.mkdir()
    timeout_s = 30
    survivor, victim = launch_ranks(
        conf, exp, probe_path, "train.max_epochs=1", f"train.ddp_timeout_s={timeout_s}",
        env={"SF_PROBE_DIR": str(probes), "SF_KILL_AT_STEP": "1", "SF_KILL_RANK": "1"},
    )  # fmt: skip
    try:
        while not (probes / "rank1_step1").is_file() and survivor.poll() is None:
            time.sleep(0.02)  # the probe writes it just before the fault
        started = time.monotonic()
        survivor.wait(timeout=120)
        waited = time.monotonic() - started
    finally:
        for process in (survivor, victim):
            process.kill()  # a no-op for one that ended
            process.wait()
    err = stderr_of(exp, 0)
    assert survivor.returncode == 2, err[-3000:]
    assert err.splitlines()[-1] == (
        "speechforge train: error: rank 1 (of 2) died or hangs: a collective failed and it did not answer "
        f"within {ROLL_CALL_S:g} s; rank 0 stops too"
    )
    assert "Traceback" not in err
    assert waited < timeout_s  # gloo sees the closed connection at once: only the roll call is waited


def test_a_batch_of_only_skipped_utterances_on_one_rank_skips_the_step_on_every_rank(tmp_path, tiny_data_dir, probe_path):
    utterances = read_data_dir(tiny_data_dir)
    sampler = DurationBatchSampler([u.duration for u in utterances], 4.0, seed=7, rank=1, world_size=2, max_batch_size=1)
    batches = list(sampler)
    for index in batches[0]:  # rank 1's first batch: damaged after prepare, as utt2dur still lists it
        Path(read_table(tiny_data_dir / "wav.scp")[utterances[index].utt_id]).write_bytes(b"damaged")
    exp, conf = make_experiment(tmp_path, tiny_data_dir, "empty_rank")
    config = yaml.safe_load(conf.read_text())
    conf.write_text(yaml.safe_dump({**config, "data": {**config["data"], "valid": "", "max_batch_size": 1}, "train": {**CONFIG["train"], "max_epochs": 1}}))
    probes = tmp_path / "probes"
    probes.mkdir()
    ranks = launch_ranks(conf, exp, probe_path, env={"SF_PROBE_DIR": str(probes)})
    try:
        codes = [process.wait(timeout=120) for process in ranks]
    finally:
        for process in ranks:
            process.kill()  # a no-op for those that ended
    assert codes == [0, 0], stderr_of(exp, 0)[-3000:] + stderr_of(exp, 1)[-3000:]
    err = stderr_of(exp, 0)
    assert "step 1: a batch of rank 1 holds no usable utterance; skipped on every rank" in err
    assert "skipped 1 steps on every rank" in err
    steps = {rank: sorted(p.name.split("_")[1] for p in probes.glob(f"rank{rank}_*")) for rank in (0, 1)}
    assert steps[0] == steps[1] == [f"step{k}" for k in range(1, len(batches))]
    for step in steps[0]:  # the same parameters on both ranks after every step
        assert (probes / f"rank0_{step}").read_text() == (probes / f"rank1_{step}").read_text()
