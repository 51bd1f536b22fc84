"""The packed export of a quantized experiment: ``speechforge export`` packs every target,
``speechforge.load(EXPORT_DIR)`` builds the packed model without float target weights (meta
device, assignment) and computes what the fake-quantized model computes; the file's size on
disk is the computed size (``quant-report``, ``report.md``)."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import speechforge
from speechforge.builder import build_model
from speechforge.cli import main
from speechforge.config import save_config
from speechforge.data.audio import load_audio
from speechforge.data.data_dir import read_data_dir
from speechforge.text.char_tokenizer import CharTokenizer
from speechforge.train.checkpoint import load_checkpoint, save_checkpoint
from speechforge_plugins.quant.minmax_weight import MinMaxWeight
from speechforge_plugins.quant.packed_linear import PackedLinear

#: one Conformer block of width 512: large enough that the file format's per-tensor overhead
#: stays far below the 2 % the size check allows, small enough to decode in a moment
MODEL = {
    "frontend": {"type": "fbank", "num_mel_bins": 40},
    "encoder": {
        "type": "conformer", "d_model": 512, "heads": 4, "num_blocks": 1, "subsampling_channels": 16,
        "attention": {"type": "rel_mha"}, "ffn": {"type": "dense", "hidden": 4096},
        "encoder_block": {"type": "conformer", "conv_kernel": 5},
    },
    "losses": [{"type": "ctc", "weight": 1.0}],
    "decode": {"methods": ["ctc_greedy_search"]},
}  # fmt: skip
TARGETS_PER_BLOCK = 9  # 2 x 2 FFN, linear_qkv, linear_out, linear_pos, 2 pointwise convs


EXP5 = {"type": "absmean_binary", "block_size": 64}
EXP1_INT8 = {"type": "minmax", "bits": 2, "block_size": None, "learn_clip": True, "scale_dtype": "int8"}


@pytest.fixture(params=[EXP5, EXP1_INT8], ids=["exp5_binary_f32", "exp1_2bit_int8"])
def quantized_experiment(request, tmp_path, tiny_data_dir):
    """A quantized experiment (random weights, the grid moved off its start), its data dir and
    its quantizer."""
    exp = write_quantized_experiment(tmp_path / "exp", tiny_data_dir, {**MODEL, "quantizer": request.param})
    return exp, tiny_data_dir, request.param


@pytest.mark.parametrize("quantizer", [EXP5, EXP1_INT8], ids=["exp5_binary_f32", "exp1_2bit_int8"])
def test_the_packed_model_is_built_on_meta_with_packed_layers_for_every_target(quantizer):
    model = build_model({**MODEL, "vocab_size": 12, "quantizer": quantizer}, packed=True)
    packed = [name for name, module in model.named_modules() if isinstance(module, PackedLinear)]
    assert len(packed) == TARGETS_PER_BLOCK and all(name.startswith("encoder.blocks.0.") for name in packed)
    assert all(p.device.type == "meta" for p in model.parameters())
    assert all(b.device.type == "meta" for name, b in model.named_buffers() if name.startswith(tuple(packed)))


@pytest.mark.slow
def test_export_then_load_runs_packed_and_equals_the_fake_quantized_model(quantized_experiment, capsys):
    exp, data, quantizer = quantized_experiment
    assert main(["export", "--exp-dir", str(exp)]) == 0
    state = load_checkpoint(exp / "export" / "model.pt")
    assert state["packed"] is True
    assert "encoder.blocks.0.feed_forward.w_1.codes" in state["model"]
    assert not any("parametrizations" in key or key == "encoder.blocks.0.feed_forward.w_1.weight" for key in state["model"])

    fake, packed = speechforge.load(exp), speechforge.load(exp / "export")
    layers = {name: m for name, m in packed.model.named_modules() if isinstance(m, PackedLinear)}
    assert len(layers) == TARGETS_PER_BLOCK
    assert all(m.codes.dtype == torch.uint8 for m in layers.values())
    large = [tuple(p.shape) for p in packed.model.parameters() if p.numel() >= 512 * 512]  # a target's size
    assert large == []  # the targets are held by their packed codes only
    assert all(p.device.type == "cpu" for p in packed.model.parameters())

    assert_encodes_like(packed, fake, data)

    capsys.readouterr()
    assert main(["quant-report", str(exp), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["packed_file"]["path"] == str(exp / "export" / "model.pt")
    assert abs(report["packed_file"]["difference"]) < 0.02, report["packed_file"]
    assert report["whole_f32_meta"] > 1 and report["layers_int8_meta"] > report["whole_int8_meta"]
    if quantizer is not EXP5:
        return  # the report section once
    assert main(["report", "--exp-dir", str(exp)]) == 0
    section = (exp / "report.md").read_text().split("## Quantized model size", 1)[1]
    assert "| whole model |" in section and "Packed file" in section


def assert_encodes_like(packed, fake, data) -> None:
    """The packed recognizer's encodings of two utterances of ``data`` equal the fake-quantized
    one's (rtol 1e-4, atol 1e-5) and its CTC greedy transcripts are the same."""
    utterances = read_data_dir(data)[:2]
    waves = [load_audio(u.audio, fake.sample_rate) for u in utterances]
    lens = torch.tensor([w.numel() for w in waves])
    speech = nn.utils.rnn.pad_sequence(waves, batch_first=True)
    expected, expected_lens = fake.encode(speech, lens)
    got, got_lens = packed.encode(speech, lens)
    assert torch.equal(got_lens, expected_lens)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    search = fake.search("ctc_greedy_search")
    assert packed.texts(search, got, got_lens) == fake.texts(search, expected, expected_lens)


def write_quantized_experiment(exp, data_dir, config: dict):
    """Tokenizer, config (with its vocabulary size) and random weights of a quantized model in
    ``exp``; learned minmax scales shrunk from their initial grid, as QAT moves them."""
    tokenizer = CharTokenizer.train([u.text for u in read_data_dir(data_dir)])
    tokenizer.save(exp / "tokenizer")
    config = {**config, "vocab_size": tokenizer.vocab_size}
    save_config(config, exp / "config.yaml")
    model = build_model(config)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, MinMaxWeight):
                module.scale.mul_(0.8)
    save_checkpoint({"model": model.state_dict()}, exp / "model_avg.pt")
    return exp
