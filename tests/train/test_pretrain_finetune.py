"""A task without transcripts pretrains on audio alone; an asr model fine-tunes from it with
train.init_from on a 50 % data.subset and decodes. Also: the run progress hooks and losses see,
validation logging every output key, and a resumed run never reloading init_from."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from torch import nn

import speechforge
from speechforge.builder import build_model
from speechforge.data.data_dir import read_data_dir
from speechforge.errors import CheckpointError, ConfigError
from speechforge.interfaces import Progress, Task
from speechforge.plugins import create_host
from speechforge.registry import build_component
from speechforge.text.char_tokenizer import CharTokenizer
from speechforge.train.checkpoint import load_checkpoint, save_checkpoint
from speechforge.train.trainer import Trainer

ENCODER = {
    "type": "conformer", "d_model": 16, "heads": 2, "num_blocks": 1,
    "ffn": {"type": "dense", "hidden": 32}, "encoder_block": {"type": "conformer", "conv_kernel": 3},
}
RUNTIME = {
    "data": {"max_seconds": 4.0, "num_workers": 0},
    "optim": {"lr": 3e-3},
    "scheduler": {"type": "constant", "warmup_steps": 1},
    "train": {"max_epochs": 2, "progress_bar": False, "seed": 3},
}


class FrameRegression(Task):
    """Test-only self-supervised task: regress each encoder frame onto the features it
    subsamples. Returns the loss and an extra scalar, ``energy``."""

    needs_transcripts = False

    def __init__(self, *, encoder, frontend=None) -> None:
        super().__init__()
        self.frontend = build_component("frontend", frontend or {"type": "fbank", "num_mel_bins": 40}, "frontend")
        self.backbone = build_component("encoder", encoder, "encoder", input_dim=self.frontend.output_dim)
        self.head = nn.Linear(self.backbone.output_dim, self.frontend.output_dim)

    def forward(self, batch, progress=None):
        assert "targets" not in batch and "target_lens" not in batch
        feats, feat_lens = self.frontend(batch["speech"], batch["speech_lens"])  # (B, T, F)
        out, out_lens = self.backbone(feats, feat_lens)  # (B, T', D)
        target = feats[:, :: self.backbone.subsampling_rate][:, : out.size(1)]  # (B, T', F)
        keep = (torch.arange(out.size(1)) < out_lens[:, None]).unsqueeze(-1)  # (B, T', 1)
        error = ((self.head(out) - target) ** 2 * keep).sum() / (keep.sum() * target.size(-1))
        return {"loss": error, "energy": out.pow(2).mean()}


class Recorder:
    """Test plugin: the frame-regression task, plus what the hooks see."""

    def __init__(self) -> None:
        self.before: list[Progress] = []
        self.after: list[tuple[int, Progress]] = []
        self.built: list[dict[str, torch.Tensor]] = []

    @speechforge.hookimpl
    def register_components(self, registry):
        registry.register("task", "frame_regression", FrameRegression)

    @speechforge.hookimpl
    def model_built(self, model, config):
        self.built.append({k: v.clone() for k, v in model.state_dict().items()})

    @speechforge.hookimpl
    def before_train_step(self, model, step, progress):
        assert progress.step == step
        self.before.append(progress)

    @speechforge.hookimpl
    def after_train_step(self, model, step, losses, progress):
        self.after.append((step, progress))


@pytest.fixture
def recorder():
    plugin = Recorder()
    host = create_host()
    host.add("recorder", plugin, "tests")
    return plugin, host


def audio_only(data_dir, root):
    """A copy of ``data_dir`` with wav.scp and utt2dur only."""
    root.mkdir()
    for name in ("wav.scp", "utt2dur"):
        shutil.copy(data_dir / name, root / name)
    return root


def pretrain(tmp_path, data_dir, host):
    audio = audio_only(data_dir, tmp_path / "untranscribed")
    config = {
        "task": "frame_regression", "frontend": {"type": "fbank", "num_mel_bins": 40}, "encoder": ENCODER, **RUNTIME,
        "data": {**RUNTIME["data"], "train": str(audio), "valid": str(audio), "max_seconds": 8.0},
    }
    trainer = Trainer(config, tmp_path / "ssl", host)  # no tokenizer, no vocab_size
    trainer.train()
    return trainer


def finetune_config(data_dir, ssl_dir):
    return {
        "frontend": {"type": "fbank", "num_mel_bins": 40}, "encoder": ENCODER, "losses": [{"type": "ctc", "weight": 1.0}],
        **RUNTIME,
        "data": {**RUNTIME["data"], "train": str(data_dir), "subset": {"fraction": 0.5, "seed": 1}},
        "train": {
            **RUNTIME["train"], "max_epochs": 1,
            "init_from": {"checkpoint": str(ssl_dir), "include": ["backbone.*"], "rename": {"backbone.": "encoder."}},
        },
    }


def test_pretrain_without_transcripts_then_finetune_a_half_subset_and_decode(tmp_path, tiny_data_dir, recorder):
    plugin, host = recorder
    ssl = pretrain(tmp_path, tiny_data_dir, host)
    records = [json.loads(line) for line in (tmp_path / "ssl" / "train_log.jsonl").read_text().splitlines()]
    valid = [r for r in records if "valid_loss" in r]
    assert len(valid) == 2 and all(r["valid_energy"] > 0 and r["valid_loss"] > 0 for r in valid)
    assert "train_energy" in records[0]

    total = ssl.steps_per_epoch * 2
    assert [p.step for p in plugin.before] == list(range(total))
    assert [s for s, _ in plugin.after] == list(range(1, total + 1))
    assert all(p.total_steps == total and p.fraction == pytest.approx(p.step / total) for _, p in plugin.after)
    assert plugin.after[-1][1].fraction == 1.0 and plugin.after[-1][1].epoch == 1 and plugin.before[0].epoch == 0

    exp = tmp_path / "asr"
    CharTokenizer.train([u.text for u in read_data_dir(tiny_data_dir)]).save(exp / "tokenizer")
    pretrained = load_checkpoint(tmp_path / "ssl" / "checkpoints" / "epoch_2.pt")["model"]
    trainer = Trainer(finetune_config(tiny_data_dir, tmp_path / "ssl"), exp, host)
    at_model_built = plugin.built[-1]  # model_built saw the pretrained encoder already
    encoder_keys = [k for k in at_model_built if k.startswith("encoder.")]
    assert encoder_keys and all(torch.equal(at_model_built[k], pretrained["backbone." + k[len("encoder."):]]) for k in encoder_keys)
    assert len(trainer.train_loader.dataset.utterances) == 4
    trainer.train()

    text = speechforge.load(exp).transcribe(read_data_dir(tiny_data_dir)[0].audio)
    assert isinstance(text, str)


def test_a_resumed_run_never_reloads_init_from(tmp_path, tiny_data_dir, recorder):
    _, host = recorder
    source = tmp_path / "ssl" / "pretrained.pt"
    save_checkpoint({"model": build_model({"task": "frame_regression", "encoder": ENCODER}, host).state_dict()}, source)
    exp = tmp_path / "asr"
    CharTokenizer.train([u.text for u in read_data_dir(tiny_data_dir)]).save(exp / "tokenizer")
    config = finetune_config(tiny_data_dir, source)
    config["train"] = {**config["train"], "max_steps": 1}
    Trainer(config, exp, host).train()
    shutil.rmtree(tmp_path / "ssl")
    config["train"]["max_steps"] = 2
    resumed = Trainer(config, exp, host, resume=True)  # would fail if it loaded the gone checkpoint
    assert resumed.state.step == 1
    with pytest.raises(CheckpointError, match="init_from.checkpoint: .*pretrained.pt: no such file or experiment dir"):
        Trainer(config, exp, host)  # a fresh start (no --resume) does load it
    config["train"]["init_from"] = {k: v for k, v in config["train"]["init_from"].items() if k != "checkpoint"}
    assert Trainer(config, exp, host).state.step == 0  # include/rename without a checkpoint: a fresh start


def test_losses_get_the_progress_through_loss_inputs(tiny_config, monkeypatch):
    model = build_model(tiny_config)
    seen = []
    ctc = model.losses["ctc"]
    real = ctc.forward
    monkeypatch.setattr(ctc, "forward", lambda inputs: seen.append(inputs.progress) or real(inputs))
    batch = {"speech": torch.randn(2, 8000), "speech_lens": torch.tensor([8000, 6000]),
             "targets": torch.tensor([[1, 2], [3, -1]]), "target_lens": torch.tensor([2, 1])}
    progress = Progress(step=3, epoch=0, total_steps=10, fraction=0.3)
    model(batch, progress=progress)
    model(batch)
    assert seen == [progress, None]


def test_a_task_without_transcripts_builds_without_vocab_size(recorder, monkeypatch, capsys, tmp_path):
    _, host = recorder
    config = {"task": "frame_regression", "encoder": ENCODER}
    assert isinstance(build_model(config, host), FrameRegression)
    with pytest.raises(ConfigError, match="vocab_size: missing"):
        build_model({"encoder": ENCODER, "losses": [{"type": "ctc"}]}, host)
    conf = tmp_path / "ssl.yaml"
    conf.write_text(json.dumps(config))
    monkeypatch.setattr("speechforge.builder.default_host", lambda: host)
    from speechforge.cli import main

    assert main(["config", "show", str(conf), "--params"]) == 0
    assert "backbone" in capsys.readouterr().out
