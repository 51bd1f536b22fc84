"""The packed export of a quantized U2++ MoE (conf/u2pp_conformer_moe_small.yaml, shrunk): the
encoder's expert banks are packed (no float copy in the file), ``speechforge.load(EXPORT_DIR)``
builds them as PackedExpertBanks on the meta device and computes what the fake-quantized model
computes; the file's size on disk is the computed size."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import speechforge
from speechforge.builder import build_model
from speechforge.cli import main
from speechforge.config import load_config
from speechforge.train.checkpoint import load_checkpoint
from speechforge_plugins.moe.moe_feed_forward import MoEFeedForward
from speechforge_plugins.quant.packed_expert_bank import PackedExpertBank
from tests.plugins.quant.test_packed_export import assert_encodes_like, write_quantized_experiment

CONF = Path(__file__).resolve().parents[3] / "egs" / "librispeech" / "conf" / "u2pp_conformer_moe_small.yaml"
#: the recipe's model at width 64 with one encoder block and 4 experts of 256 (every
#: contraction dim a multiple of 64); the float decoder's wide experts (4 MB, never run by
#: ``encode``) keep the file format's per-tensor overhead (about 400 bytes a tensor) at 1 %,
#: inside the 2 % the size check allows
SHRUNK = [
    "frontend.num_mel_bins=40", "encoder.d_model=64", "encoder.num_blocks=1", "encoder.subsampling_channels=8",
    "encoder.encoder_block.conv_kernel=3", "encoder.ffn.num_experts=4", "encoder.ffn.hidden=256",
    "decoder.ffn.num_experts=2", "decoder.ffn.hidden=2048",
]  # fmt: skip
BANK = "encoder.blocks.0.feed_forward.w_1"
ENCODER_BANKS = 4  # w_1 and w_2 of the macaron and the second FFN of the one block

QUANTIZERS = {
    "exp5_binary_blocks": {"type": "absmean_binary", "block_size": 64},
    "exp4_binary_per_channel_int8": {"type": "absmean_binary", "block_size": None, "scale_dtype": "int8"},
    "exp1_2bit_per_channel": {"type": "minmax", "bits": 2, "block_size": None},
}


@pytest.fixture(params=sorted(QUANTIZERS))
def quantized_moe_experiment(request, tmp_path, tiny_data_dir):
    """A quantized U2++ MoE experiment (random weights, minmax grids moved off their start)."""
    exp = write_quantized_experiment(tmp_path / "exp", tiny_data_dir, {**load_config(CONF, SHRUNK), "quantizer": QUANTIZERS[request.param]})
    return exp, tiny_data_dir


def test_export_then_load_runs_packed_banks_and_equals_the_fake_quantized_model(quantized_moe_experiment, capsys):
    exp, data = quantized_moe_experiment
    packed_model = build_model(speechforge.load(exp).config, packed=True)
    banks = {name: m for name, m in packed_model.named_modules() if isinstance(m, PackedExpertBank)}
    assert len(banks) == ENCODER_BANKS and all(b.device.type == "meta" for m in banks.values() for b in m.buffers())

    assert main(["export", "--exp-dir", str(exp)]) == 0
    state = load_checkpoint(exp / "export" / "model.pt")["model"]
    assert state[f"{BANK}.codes"].dtype == torch.uint8 and state[f"{BANK}.codes"].shape[:2] == (4, 256)
    assert f"{BANK.rpartition('.')[0]}.b_1" in state  # the biases and the router stay float
    assert not any("parametrizations" in key or key == BANK for key in state)
    stacks = {(4, 256, 64), (4, 64, 256)}  # an encoder bank's (E, O, I)
    assert not any(tuple(value.shape) in stacks for value in state.values())

    fake, packed = speechforge.load(exp), speechforge.load(exp / "export")
    layers = [m for name, m in packed.model.encoder.named_modules() if isinstance(m, MoEFeedForward)]
    assert len(layers) == 2 and all(isinstance(layer.w_1, PackedExpertBank) for layer in layers)
    assert not any(tuple(p.shape) in stacks for p in packed.model.parameters())
    assert_encodes_like(packed, fake, data)

    capsys.readouterr()
    assert main(["quant-report", str(exp), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["packed_file"]["computed_bytes"] == sum(v.numel() * v.element_size() for v in state.values())
    assert abs(report["packed_file"]["difference"]) < 0.02, report["packed_file"]
    assert report["layers_int8_meta"] > report["whole_int8_meta"] > 1
