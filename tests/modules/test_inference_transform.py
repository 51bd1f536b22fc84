"""``optimize_for_cpu_inference``: the transformed model equals the plain one, keeps its state
dict, never touches the model it was given, leaves non-plain layers alone, and its packed
layers follow weight changes and fall back to the plain ops where a gradient is needed."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from speechforge.modules.channels_last_conv1d import ChannelsLastConv1d
from speechforge.modules.feed_forward import PositionwiseFeedForward
from speechforge.modules.fused_linear import plain_kernels
from speechforge.modules.inference_transform import optimize_for_cpu_inference
from speechforge.modules.packed_linear import PackedLinear
from speechforge.plugins import default_host

INPUT_DIM = 20
ENCODERS = {
    "conformer": {"encoder_block": {"type": "conformer", "conv_kernel": 5}, "attention": {"type": "rel_mha"}},
    "gated_gelu_ffn": {"ffn": {"type": "dense", "hidden": 32, "gated": True, "activation": "gelu"}},
    "mamba": {"encoder_block": {"type": "mamba", "d_state": 4, "use_ffn": True}},
    "moe": {"ffn": {"type": "moe", "num_experts": 4, "top_k": 2, "hidden": 32}},
}


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    config = {"type": "conformer", "d_model": 16, "heads": 2, "num_blocks": 2, "ffn": {"type": "dense", "hidden": 32}}
    return default_host().registry.build("encoder", {**config, **ENCODERS[name]}, "encoder", input_dim=INPUT_DIM)


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("name", list(ENCODERS))
def test_transformed_encoder_equals_the_plain_one(name, batch):
    model = build(name).eval()
    x = torch.randn(batch, 60, INPUT_DIM)
    lengths = torch.full((batch,), 60)
    lengths[-1] = 41
    with torch.no_grad():
        with plain_kernels():
            expected, expected_lens = model(x, lengths)
        transformed = optimize_for_cpu_inference(model)
        got, got_lens = transformed(x, lengths)
    assert torch.equal(got_lens, expected_lens)
    for i, n in enumerate(expected_lens.tolist()):
        torch.testing.assert_close(got[i, :n], expected[i, :n], atol=1e-5, rtol=1e-5)
    assert any(isinstance(m, PackedLinear) for m in transformed.modules())


def test_the_given_model_is_untouched_and_the_state_dict_keeps_its_keys():
    model = build("mamba").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    transformed = optimize_for_cpu_inference(model)
    assert model.training and not transformed.training
    assert not any(isinstance(m, (PackedLinear, ChannelsLastConv1d)) for m in model.modules())
    assert isinstance(transformed.blocks[0].mamba.conv1d, ChannelsLastConv1d)
    after = transformed.state_dict()
    assert list(after) == list(before)
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    build("mamba").load_state_dict(after, strict=True)


def test_activation_is_fused_into_the_layer_it_follows():
    ffn = optimize_for_cpu_inference(PositionwiseFeedForward(d_model=8, hidden=16, activation="relu"))
    assert isinstance(ffn.w_1, PackedLinear) and isinstance(ffn.w_1.activation, nn.ReLU)
    assert isinstance(ffn.activation, nn.Identity)
    assert isinstance(ffn.w_2, PackedLinear) and ffn.w_2.activation is None


def test_layers_that_are_not_plain_are_left_alone():
    class Subclassed(nn.Linear):
        pass

    ffn = PositionwiseFeedForward(d_model=8, hidden=16, gated=True)
    ffn.w_gate = Subclassed(8, 16)
    parametrize.register_parametrization(ffn.w_1, "weight", nn.Identity())
    ffn.w_2.register_forward_hook(lambda module, args, out: None)
    transformed = optimize_for_cpu_inference(ffn)
    assert type(transformed.w_gate) is Subclassed
    assert parametrize.is_parametrized(transformed.w_1) and type(transformed.activation) is nn.SiLU  # not fused
    assert type(transformed.w_2) is nn.Linear


def test_packed_linear_follows_weight_changes():
    layer = nn.Linear(16, 24)
    packed = optimize_for_cpu_inference(layer)
    assert isinstance(packed, PackedLinear) and packed.weight is not layer.weight
    x = torch.randn(3, 7, 16)
    with torch.no_grad():
        torch.testing.assert_close(packed(x), F.linear(x, packed.weight, packed.bias), atol=1e-5, rtol=1e-5)
        packed.weight.mul_(2.0)  # in place, as load_state_dict does
        torch.testing.assert_close(packed(x), F.linear(x, packed.weight, packed.bias), atol=1e-5, rtol=1e-5)
    packed.load_state_dict(nn.Linear(16, 24).state_dict(), assign=True)  # new tensors
    with torch.no_grad():
        torch.testing.assert_close(packed(x), F.linear(x, packed.weight, packed.bias), atol=1e-5, rtol=1e-5)


def test_inference_forms_compute_gradients_like_the_plain_layers():
    linear, conv = nn.Linear(8, 12), nn.Conv1d(8, 8, 3, padding=1, groups=8)
    forms = (PackedLinear(linear, nn.SiLU()), ChannelsLastConv1d(conv, nn.SiLU()))
    inputs = (torch.randn(2, 5, 8, requires_grad=True), torch.randn(2, 8, 5, requires_grad=True))
    for layer, form, x in zip((linear, conv), forms, inputs):
        form(x).square().sum().backward()
        got = (x.grad, layer.weight.grad)
        x.grad, layer.weight.grad = None, None
        F.silu(layer(x)).square().sum().backward()
        torch.testing.assert_close(got[0], x.grad)
        torch.testing.assert_close(got[1], layer.weight.grad)


def test_channels_last_conv1d_equals_conv1d_then_activation():
    conv = nn.Conv1d(12, 12, 4, padding=2, groups=12)
    x = torch.randn(3, 17, 12).transpose(1, 2)  # (B, C, L) view of (B, L, C) memory
    for activation in (None, nn.SiLU(), nn.ReLU(), nn.GELU()):
        with torch.no_grad():
            expected = conv(x) if activation is None else activation(conv(x))
            torch.testing.assert_close(ChannelsLastConv1d(conv, activation)(x), expected, atol=1e-5, rtol=1e-5)
