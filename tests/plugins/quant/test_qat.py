"""Quantization-aware training from a float experiment: train.init_from loads the float
weights under their float names before the quantizer initialises from them; the learned
quantization parameters train; bf16 autocast and --resume (exact); DDP on two gloo ranks."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from torch.nn.utils import parametrize

from speechforge.builder import build_model
from speechforge.data.data_dir import read_data_dir
from speechforge.text.char_tokenizer import CharTokenizer
from speechforge.train.checkpoint import load_checkpoint, save_checkpoint
from speechforge.train.trainer import Trainer

CONFIG = {
    "frontend": {"type": "fbank", "num_mel_bins": 40},
    "encoder": {
        "type": "conformer", "d_model": 32, "heads": 2, "num_blocks": 1, "subsampling_channels": 8,
        "ffn": {"type": "dense", "hidden": 64}, "encoder_block": {"type": "conformer", "conv_kernel": 3},
    },
    "losses": [{"type": "ctc", "weight": 1.0}],
    "data": {"max_seconds": 4.0, "num_workers": 0},
    "optim": {"lr": 3e-3},
    "scheduler": {"type": "constant", "warmup_steps": 1},
    "train": {"max_epochs": 1, "progress_bar": False, "seed": 3, "save_interval_steps": 2},
}  # fmt: skip
QUANTIZER = {"type": "minmax", "bits": 2, "block_size": 16, "learn_clip": True}
W_1 = "encoder.blocks.0.feed_forward.w_1"


def experiment(root: Path, data: Path, name: str, **sections) -> tuple[Path, dict]:
    """An exp dir with a character tokenizer of ``data`` and its config (CONFIG + ``sections``,
    ``train`` merged)."""
    exp = root / name
    CharTokenizer.train([u.text for u in read_data_dir(data)]).save(exp / "tokenizer")
    train = {**CONFIG["train"], **sections.pop("train", {})}
    config = {**CONFIG, **sections, "train": train, "data": {**CONFIG["data"], "train": str(data), "valid": str(data)}}
    return exp, config


def test_qat_starts_from_the_float_experiment_and_learns_its_grid(tmp_path, tiny_data_dir):
    float_exp, float_config = experiment(tmp_path, tiny_data_dir, "float")
    vocab_size = CharTokenizer.load(float_exp / "tokenizer").vocab_size
    float_weights = build_model({**float_config, "vocab_size": vocab_size}).state_dict()
    save_checkpoint({"model": float_weights}, float_exp / "model_avg.pt")  # what init_from reads of it

    qat_exp, qat_config = experiment(
        tmp_path, tiny_data_dir, "qat", quantizer=QUANTIZER, train={"init_from": {"checkpoint": str(float_exp)}}
    )
    trainer = Trainer(qat_config, qat_exp)
    layer = trainer.model.get_submodule(W_1)
    assert parametrize.is_parametrized(layer, "weight")
    torch.testing.assert_close(layer.parametrizations.weight.original, float_weights[f"{W_1}.weight"], rtol=0, atol=0)
    grid = layer.parametrizations.weight[0]
    blocks = float_weights[f"{W_1}.weight"].unflatten(-1, (2, 16))  # (O, I / 16, 16)
    start = (blocks.amax(-1, keepdim=True) - blocks.amin(-1, keepdim=True)) / 3  # 2 bits: 3 steps
    torch.testing.assert_close(grid.scale.detach(), start)
    assert any(p is grid.scale for group in trainer.optimizer.param_groups for p in group["params"])
    trainer.train()
    state = load_checkpoint(qat_exp / "checkpoints" / "epoch_1.pt")["model"]
    assert f"{W_1}.parametrizations.weight.original" in state and f"{W_1}.weight" not in state
    assert not torch.allclose(state[f"{W_1}.parametrizations.weight.0.scale"], start)  # learned
    assert not torch.allclose(state[f"{W_1}.parametrizations.weight.0.clip_factor"], torch.ones_like(start))


@pytest.mark.slow
def test_bf16_qat_resumed_mid_epoch_ends_exactly_as_a_straight_run(tmp_path, tiny_data_dir):
    sections = {"quantizer": QUANTIZER, "train": {"precision": "bf16"}}  # one epoch of 4 steps
    straight, config = experiment(tmp_path, tiny_data_dir, "straight", **sections)
    Trainer(config, straight).train()
    stopped, config = experiment(tmp_path, tiny_data_dir, "stopped", **sections)
    Trainer({**config, "train": {**config["train"], "max_steps": 2}}, stopped).train()
    Trainer(config, stopped, resume=True).train()
    a = load_checkpoint(straight / "checkpoints" / "epoch_1.pt")
    b = load_checkpoint(stopped / "checkpoints" / "epoch_1.pt")
    assert a["progress"]["step"] == b["progress"]["step"] > 2
    assert any(".parametrizations." in key for key in a["model"])
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


PROBE = '''
import os
import torch.distributed as dist
import speechforge


@speechforge.hookimpl
def after_train_step(model, step, losses):
    """Test probe: each rank writes the sum of its parameters after every step."""
    total = sum(float(p.detach().double().sum()) for p in model.parameters())
    with open(os.path.join(os.environ["SF_PROBE_DIR"], f"rank{dist.get_rank()}_step{step}"), "w") as f:
        f.write(repr(total))
'''


@pytest.mark.slow
def test_ddp_qat_on_two_gloo_ranks_keeps_weights_and_grids_in_sync(tmp_path, tiny_data_dir):
    site, probes = tmp_path / "site", tmp_path / "probes"
    probes.mkdir()
    (site / "sf_quant_probe-0.1.dist-info").mkdir(parents=True)
    (site / "sf_quant_probe.py").write_text(textwrap.dedent(PROBE))
    (site / "sf_quant_probe-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: sf-quant-probe\nVersion: 0.1\n")
    (site / "sf_quant_probe-0.1.dist-info" / "entry_points.txt").write_text("[speechforge.plugins]\nquant_probe = sf_quant_probe\n")
    exp, config = experiment(tmp_path, tiny_data_dir, "ddp", quantizer=QUANTIZER)
    conf = tmp_path / "ddp.yaml"
    conf.write_text(yaml.safe_dump(config))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "speechforge.cli"]
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1", "SF_PROBE_DIR": str(probes)}
    done = subprocess.run(
        [*launcher, "train", "--config", str(conf), "--exp-dir", str(exp)], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    steps = sorted(p.name.split("_")[1] for p in probes.glob("rank0_*"))
    assert steps and steps == sorted(p.name.split("_")[1] for p in probes.glob("rank1_*"))
    for step in steps:
        assert (probes / f"rank0_{step}").read_text() == (probes / f"rank1_{step}").read_text()
    state = load_checkpoint(exp / "checkpoints" / "epoch_1.pt")["model"]
    assert f"{W_1}.parametrizations.weight.0.scale" in state
