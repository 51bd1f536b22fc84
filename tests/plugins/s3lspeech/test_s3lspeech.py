"""S3LSpeech plugin: the loss against a direct formula, the EMA teacher (update, schedule, no
gradient), the teacher's shift, the student-only augmentations, the weighted layer sum, paper
parameter counts on the meta device, and a tiny pretrain -> fine-tune run."""
from __future__ import annotations

import json
import math

import pytest
import torch

import speechforge
from speechforge.builder import build_model
from speechforge.data.data_dir import read_data_dir
from speechforge.errors import ConfigError
from speechforge.interfaces import Progress
from speechforge.plugins import create_host
from speechforge.registry import build_component
from speechforge.text.char_tokenizer import CharTokenizer
from speechforge.train.trainer import Trainer
from speechforge_plugins.s3lspeech.augment import MultiConditionNoise, NoisySpecAugment, mix_at_snr
from speechforge_plugins.s3lspeech.ssl_task import contrastive_loss, ema_momentum

HOST = create_host()


def att(d, f, h):
    return {"type": "attention", "d_model": d, "heads": h, "ffn": {"type": "dense", "hidden": f}}


def conv(c, k, s):
    return {"type": "conv1d", "channels": c, "kernel": k, "stride": s}


TINY_LAYERS = [conv(16, 3, 2), att(16, 32, 2), conv(24, 3, 2), {"type": "projection", "dim": 16}, att(16, 32, 2), att(16, 32, 2)]
TINY_SSL = {"task": "ssl", "frontend": {"type": "fbank", "num_mel_bins": 20}, "projection_dim": 8,
            "encoder": {"type": "layer_table", "layers": TINY_LAYERS}, "noise": {"snr_db": [5, 15]},
            "spec_augment": {"time_width": 4, "freq_width": 3}}  # fmt: skip


def batch(n=2, samples=8000):
    torch.manual_seed(0)
    return {"speech": torch.randn(n, samples) * 0.1, "speech_lens": torch.tensor([samples, samples * 3 // 4][:n])}


def test_contrastive_loss_matches_the_direct_formula_of_equation_2():
    torch.manual_seed(1)
    z, zt, lengths, tau = torch.randn(2, 5, 4), torch.randn(2, 5, 4), torch.tensor([5, 3]), 0.3
    terms = []
    for b in range(2):
        for i in range(int(lengths[b])):
            phi = [torch.dot(z[b, i], zt[b, j]) / (z[b, i].norm() * zt[b, j].norm()) for j in range(int(lengths[b]))]
            terms.append(-math.log(math.exp(phi[i] / tau) / sum(math.exp(p / tau) for p in phi)))
    assert contrastive_loss(z, zt, lengths, tau).item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)


def test_ema_update_and_cosine_schedule():
    assert ema_momentum(0.99, "constant", 0.7) == 0.99
    assert ema_momentum(0.99, "cosine", 0.0) == pytest.approx(0.99)
    assert ema_momentum(0.99, "cosine", 0.5) == pytest.approx(0.995)
    assert ema_momentum(0.99, "cosine", 1.0) == pytest.approx(1.0)
    model = build_model({**TINY_SSL, "momentum": 0.9}, HOST)
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(1.0)
    before = [(t.clone(), s.clone()) for t, s in model.student_pairs()]
    assert model.update_teacher(Progress(step=1, epoch=0, total_steps=10, fraction=0.1)) == 0.9
    for (t, s), (t_new, _) in zip(before, model.student_pairs()):
        assert torch.allclose(t_new, 0.9 * t + 0.1 * s)
    with pytest.raises(ConfigError, match="momentum_schedule: must be one of constant, cosine"):
        build_model({**TINY_SSL, "momentum_schedule": "linear"}, HOST)


def test_the_teacher_gets_no_gradient_and_the_student_does():
    model = build_model(TINY_SSL, HOST).train()
    model(batch())["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in model.teacher_encoder.parameters())
    assert all(p.grad is not None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.predictor.parameters())


def test_augmentations_reach_the_student_only_and_the_teacher_is_shifted(monkeypatch):
    model = build_model({**TINY_SSL, "max_shift": 2}, HOST).train()
    seen = {}
    monkeypatch.setattr("speechforge_plugins.s3lspeech.ssl_task.random.randint", lambda a, b: 2)
    student_forward, teacher_forward = model.encoder.forward, model.teacher_encoder.forward
    monkeypatch.setattr(model.encoder, "forward", lambda f, l: seen.setdefault("student", (f, l)) and student_forward(f, l))
    monkeypatch.setattr(model.teacher_encoder, "forward", lambda f, l: seen.setdefault("teacher", (f, l)) and teacher_forward(f, l))
    data = batch()
    model(data)
    clean, clean_lens = model.frontend(data["speech"], data["speech_lens"])
    delay = 2 * model.encoder.subsampling_rate
    teacher, teacher_lens = seen["teacher"]
    assert torch.equal(teacher[:, delay:], clean) and torch.all(teacher[:, :delay] == 0)
    assert torch.equal(teacher_lens, clean_lens + delay)
    student, _ = seen["student"]
    assert student.shape == clean.shape and not torch.allclose(student, clean)


def test_spec_augment_zeroes_time_masks_and_fills_frequency_masks_with_noise():
    torch.manual_seed(2)
    feats = torch.full((3, 50, 20), 5.0)
    out = NoisySpecAugment(num_time_masks=1, time_width=10, num_freq_masks=1, freq_width=5).train()(feats)
    zero_frames = (out == 0).all(-1)
    noisy = (out != 5.0) & (out != 0)
    assert zero_frames.any() and noisy.any()
    noisy_bins = noisy.any(1)  # (B, F): a band of whole bins in every non-masked frame
    assert torch.all(noisy[~zero_frames].view(-1, 20).any(0) <= noisy_bins.any(0))
    assert torch.equal(NoisySpecAugment().eval()(feats), feats)


def test_noise_mixes_at_the_requested_snr_and_babble_uses_the_batch():
    torch.manual_seed(3)
    speech, noise = torch.randn(2, 4000), torch.randn(2, 4000)
    lengths = torch.tensor([4000, 2000])
    mixed = mix_at_snr(speech, noise, torch.tensor([10.0, 0.0]), lengths)
    for b, snr in ((0, 10.0), (1, 0.0)):
        n = int(lengths[b])
        added = mixed[b, :n] - speech[b, :n]
        assert 10 * math.log10(speech[b, :n].pow(2).mean() / added.pow(2).mean()) == pytest.approx(snr, abs=1e-3)
    assert torch.all(mixed[1, 2000:] == speech[1, 2000:])
    babble = MultiConditionNoise(babble_prob=1.0, babble_speakers=1)
    assert torch.equal(babble.noise_for(speech, 0), speech[1])
    with pytest.raises(ConfigError, match="noise.snr_db"):
        MultiConditionNoise(snr_db=(10, 0))


def test_ssl_pretrained_outputs_the_softmax_weighted_sum_and_freezes_by_progress():
    inner = {"type": "layer_table", "layers": TINY_LAYERS}
    encoder = build_component("encoder", {"type": "ssl_pretrained", "encoder": inner, "layers": [1, 2], "freeze_fraction": 0.5},
                              "encoder", input_dim=20)  # fmt: skip
    with torch.no_grad():
        encoder.layer_weights.copy_(torch.tensor([0.3, -0.2]))
    feats, lengths = torch.randn(2, 40, 20), torch.tensor([40, 30])
    encoder.eval()
    _, _, (first, second) = encoder.inner.forward_layers(feats, lengths, [1, 2])
    w = torch.softmax(torch.tensor([0.3, -0.2]), 0)
    out, _ = encoder(feats, lengths)
    assert torch.allclose(out, w[0] * first + w[1] * second, atol=1e-6)
    encoder.train()
    encoder.follow(Progress(step=1, epoch=0, total_steps=10, fraction=0.1))
    encoder(feats, lengths)[0].sum().backward()
    assert all(p.grad is None for p in encoder.inner.parameters()) and encoder.layer_weights.grad is not None
    encoder.follow(Progress(step=6, epoch=0, total_steps=10, fraction=0.6))
    encoder(feats, lengths)[0].sum().backward()  # the blocks train; the unused final norm does not
    assert all(p.grad is not None for n, p in encoder.inner.named_parameters() if not n.startswith("norm."))
    mixed_rates = {"type": "ssl_pretrained", "encoder": inner, "layers": [0, 2]}
    with pytest.raises(ConfigError, match=r"encoder.layers: blocks \[0, 2\] have different frame rates"):
        build_component("encoder", mixed_rates, "encoder", input_dim=20)(feats, lengths)


def test_layer_table_errors_name_the_row():
    with pytest.raises(ConfigError, match=r"encoder.layers\[1\].d_model: 32 but the row before gives 16"):
        build_component("encoder", {"type": "layer_table", "layers": [conv(16, 3, 2), att(32, 64, 2)]}, "encoder", input_dim=20)
    with pytest.raises(ConfigError, match=r"encoder.layers\[0\].type: must be one of"):
        build_component("encoder", {"type": "layer_table", "layers": [{"type": "lstm"}]}, "encoder", input_dim=20)


def paper_encoder(name):
    from speechforge.config import load_config  # noqa: PLC0415

    config = load_config(f"egs/librispeech/conf/{name}_pretrain.yaml")
    with torch.device("meta"):
        encoder = build_component("encoder", config["encoder"], "encoder", input_dim=config["frontend"]["num_mel_bins"])
    return sum(p.numel() for p in encoder.parameters() if p.requires_grad)


@pytest.mark.parametrize(("name", "millions"), [("s3lspeech", 23.2), ("essl", 90.8)])
def test_paper_shaped_encoders_have_the_paper_parameter_counts(name, millions):
    assert paper_encoder(name) == pytest.approx(millions * 1e6, rel=0.1)


def test_tiny_pretrain_then_finetune_from_the_student(tmp_path, tiny_data_dir):
    audio = tmp_path / "untranscribed"
    audio.mkdir()
    for name in ("wav.scp", "utt2dur"):
        (audio / name).write_text((tiny_data_dir / name).read_text())
    runtime = {"optim": {"lr": 3e-3}, "scheduler": {"type": "constant", "warmup_steps": 1},
               "train": {"max_epochs": 1, "progress_bar": False, "seed": 3}}  # fmt: skip
    config = {**TINY_SSL, **runtime, "data": {"train": str(audio), "valid": str(audio), "max_seconds": 8.0, "num_workers": 0}}
    Trainer(config, tmp_path / "ssl", HOST).train()
    records = [json.loads(line) for line in (tmp_path / "ssl" / "train_log.jsonl").read_text().splitlines()]
    assert records[0]["ema_momentum"] == 0.999 and records[-1]["valid_loss"] > 0  # the plugin's hook moved the teacher
    exp = tmp_path / "asr"
    CharTokenizer.train([u.text for u in read_data_dir(tiny_data_dir)]).save(exp / "tokenizer")
    finetune = {
        "frontend": TINY_SSL["frontend"], "losses": [{"type": "ctc", "weight": 1.0}], **runtime,
        "encoder": {"type": "ssl_pretrained", "encoder": TINY_SSL["encoder"], "freeze_fraction": 0.5},
        "data": {"train": str(tiny_data_dir), "max_seconds": 4.0, "num_workers": 0},
        "train": {**runtime["train"], "init_from": {"checkpoint": str(tmp_path / "ssl"), "include": ["encoder.*"],
                                                    "rename": {"encoder.": "encoder.inner."}}},
    }  # fmt: skip
    trainer = Trainer(finetune, exp, HOST)
    pretrained = torch.load(tmp_path / "ssl" / "checkpoints" / "epoch_1.pt", weights_only=True)["model"]
    loaded = trainer.model.state_dict()
    assert all(torch.equal(loaded["encoder.inner." + k[len("encoder."):]], v) for k, v in pretrained.items() if k.startswith("encoder."))
    trainer.train()
    assert isinstance(speechforge.load(exp).transcribe(read_data_dir(tiny_data_dir)[0].audio), str)
