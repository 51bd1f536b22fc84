"""Every layer of the Conformer is a plain torch layer that the model calls as a module: a
module swap and a parametrization of any of them take effect on every path (training,
inference, inference after the CPU transform), and checkpoints saved before the layers became
plain (Conv1d pointwise weights, separate q/k/v) still load and give the same outputs."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from speechforge.modules.inference_transform import optimize_for_cpu_inference
from speechforge.modules.multi_head_attention import MultiHeadAttention
from speechforge.plugins import default_host

FIXTURE = Path(__file__).parents[1] / "fixtures" / "encoders_pre_plain_layers.pt"
INPUT_DIM = 20


def build_encoder(config: dict) -> nn.Module:
    return default_host().registry.build("encoder", config, "encoder", input_dim=INPUT_DIM)


def conformer() -> nn.Module:
    torch.manual_seed(0)
    return build_encoder({
        "type": "conformer", "d_model": 16, "heads": 2, "num_blocks": 1, "dropout": 0.0,
        "ffn": {"type": "dense", "hidden": 32, "dropout": 0.0}, "attention": {"type": "rel_mha"},
        "encoder_block": {"type": "conformer", "conv_kernel": 3},
    })  # fmt: skip


def encoder_run(batch: int):
    """The encoder's output on a padded batch of ``batch`` utterances (the same dropout masks
    on every call)."""
    torch.manual_seed(1)
    x = torch.randn(batch, 40, INPUT_DIM)
    lengths = torch.full((batch,), 40)
    lengths[-1] = 31

    def run(model: nn.Module) -> torch.Tensor:
        torch.manual_seed(2)
        return model(x, lengths)[0]

    return run


CONFORMER_LAYERS = [
    "embed.out",
    "blocks.0.feed_forward_macaron.w_1",
    "blocks.0.feed_forward.w_2",
    "blocks.0.self_attn.linear_qkv",
    "blocks.0.self_attn.linear_out",
    "blocks.0.self_attn.linear_pos",
    "blocks.0.conv_module.pointwise_conv1",
    "blocks.0.conv_module.depthwise_conv",
    "blocks.0.conv_module.pointwise_conv2",
]


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("path", CONFORMER_LAYERS)
def test_swap_and_parametrization_of_every_conformer_layer_take_effect(path, batch, assert_layer_changes_take_effect):
    assert_layer_changes_take_effect(conformer(), path, encoder_run(batch))


@pytest.mark.parametrize("name", ["conformer", "mamba"])
def test_checkpoint_from_before_plain_layers_loads_and_gives_its_outputs(name):
    """The fixture was written by the code before this change (tiny encoders, weights moved
    off their initial values, the output they gave); the configs below are the ones used."""
    fixture = torch.load(FIXTURE, weights_only=True)
    block = (
        {"type": "conformer", "conv_kernel": 3}
        if name == "conformer"
        else {"type": "mamba", "d_state": 2, "expand": 1, "use_ffn": True}
    )
    config = {
        "type": "conformer", "d_model": 8, "heads": 2, "num_blocks": 1, "subsampling_channels": 2,
        "ffn": {"type": "dense", "hidden": 8}, "encoder_block": block,
        **({"attention": {"type": "rel_mha"}} if name == "conformer" else {}),
    }  # fmt: skip
    state_dict = fixture[name]["state_dict"]
    if name == "conformer":
        assert "blocks.0.self_attn.linear_q.weight" in state_dict  # the old layout, really
        assert state_dict["blocks.0.conv_module.pointwise_conv1.weight"].dim() == 3
    model = build_encoder(config).eval()
    model.load_state_dict(state_dict, strict=True)
    with torch.no_grad():
        for candidate in (model, optimize_for_cpu_inference(model)):
            out, lengths = candidate(fixture["input"], fixture["input_lengths"])
            assert torch.equal(lengths, fixture[name]["output_lengths"])
            torch.testing.assert_close(out, fixture[name]["output"], atol=1e-5, rtol=1e-5)


def test_new_state_dict_layout_round_trips():
    model = conformer()
    state = model.state_dict()
    assert state["blocks.0.self_attn.linear_qkv.weight"].shape == (48, 16)
    assert state["blocks.0.conv_module.pointwise_conv1.weight"].shape == (32, 16)
    assert state["blocks.0.conv_module.depthwise_conv.weight"].shape == (16, 1, 1, 3)
    other = conformer()
    other.load_state_dict(state, strict=True)
    for key, value in other.state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize("shared", ["self", "key_is_value", "all_different"])
def test_every_attention_input_goes_through_its_third_of_linear_qkv(shared):
    attention = MultiHeadAttention(d_model=16, heads=2)
    query = torch.randn(2, 5, 16)
    key = query if shared == "self" else torch.randn(2, 7, 16)
    value = key if shared != "all_different" else torch.randn(2, 7, 16)
    weights, biases = attention.linear_qkv.weight.chunk(3), attention.linear_qkv.bias.chunk(3)
    for got, x, w, b in zip(attention.project(query, key, value), (query, key, value), weights, biases):
        torch.testing.assert_close(got, F.linear(x, w, b))
