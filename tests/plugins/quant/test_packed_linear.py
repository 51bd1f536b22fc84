"""PackedLinear: parity with F.linear on the fake-quantized weight for every quantizer setting,
packed storage (never the float weight), block-by-block unpacking, state-dict round trip."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from speechforge.errors import ConfigError
from speechforge_plugins.quant import packed_buffers, packed_linear
from speechforge_plugins.quant.absmean_binary_weight import AbsmeanBinaryWeight
from speechforge_plugins.quant.minmax_weight import MinMaxWeight
from speechforge_plugins.quant.packed_linear import PackedLinear

IN, OUT = 48, 10

QUANTIZERS = {
    "exp4_binary_per_channel": lambda w: AbsmeanBinaryWeight(w, name="lin", block_size=None),
    "exp5_binary_blocks_f32": lambda w: AbsmeanBinaryWeight(w, name="lin", block_size=16),
    "exp5_binary_blocks_int8": lambda w: AbsmeanBinaryWeight(w, name="lin", block_size=16, scale_dtype="int8"),
    "binary_centralized": lambda w: AbsmeanBinaryWeight(w, name="lin", block_size=8, centralize=True),
    "exp1_2bit_per_channel": lambda w: MinMaxWeight(w, name="lin", bits=2),
    "exp2_2bit_blocks_clip_int8": lambda w: MinMaxWeight(
        w, name="lin", bits=2, block_size=16, learn_clip=True, scale_dtype="int8"
    ),
    "exp3_1bit_minmax_clip": lambda w: MinMaxWeight(w, name="lin", bits=1, clip=0.8),
    "2bit_odd_block": lambda w: MinMaxWeight(w, name="lin", bits=2, block_size=6),
}


def quantized_linear(make, bias: bool = True) -> nn.Linear:
    torch.manual_seed(0)
    linear = nn.Linear(IN, OUT, bias=bias)
    parametrize.register_parametrization(linear, "weight", make(linear.weight))
    quantizer = linear.parametrizations.weight[0]
    if isinstance(quantizer, MinMaxWeight):  # as after some training: grid off its min/max start
        with torch.no_grad():
            quantizer.scale.mul_(0.7)
            quantizer.zero_point.add_(0.01)
    return linear


@pytest.mark.parametrize("setting", sorted(QUANTIZERS))
def test_packed_output_equals_linear_on_fake_quantized_weight(setting):
    linear = quantized_linear(QUANTIZERS[setting])
    packed = PackedLinear.from_parametrized(linear)
    x = torch.randn(2, 7, IN)
    with torch.no_grad():
        expected = F.linear(x, linear.weight, linear.bias)  # (2, 7, OUT)
        torch.testing.assert_close(packed(x), expected, rtol=1e-4, atol=1e-5)


def test_weights_stay_packed_and_state_dict_keys_are_pinned():
    packed = PackedLinear.from_parametrized(quantized_linear(QUANTIZERS["exp2_2bit_blocks_clip_int8"]))
    state = packed.state_dict()
    assert list(state) == ["codes", "scale", "scale_step", "zero_point", "zero_point_step", "bias"]
    assert state["codes"].dtype == torch.uint8 and state["codes"].shape == (OUT, IN // 16, 16 * 2 // 8)
    assert state["scale"].dtype == state["zero_point"].dtype == torch.int8
    assert not list(packed.parameters())
    binary = PackedLinear.from_parametrized(quantized_linear(QUANTIZERS["exp5_binary_blocks_f32"], bias=False))
    assert list(binary.state_dict()) == ["codes", "scale"]
    assert binary.codes.numel() == OUT * IN // 8


def test_forward_unpacks_a_few_blocks_at_a_time(monkeypatch):
    linear = quantized_linear(QUANTIZERS["exp5_binary_blocks_f32"])
    packed = PackedLinear.from_parametrized(linear)
    unpacked_sizes = []
    real_unpack = packed_buffers.unpack_bits

    def recording_unpack(codes, bits, length):
        out = real_unpack(codes, bits, length)
        unpacked_sizes.append(out.numel())
        return out

    monkeypatch.setattr(packed_linear, "UNPACK_BUDGET", OUT * 16)  # one block of 16 per step
    monkeypatch.setattr(packed_buffers, "unpack_bits", recording_unpack)
    x = torch.randn(3, IN)
    with torch.no_grad():
        torch.testing.assert_close(packed(x), F.linear(x, linear.weight, linear.bias), rtol=1e-4, atol=1e-5)
    assert unpacked_sizes == [OUT * 16] * (IN // 16)


def test_packed_state_dict_loads_into_an_empty_layer():
    source = PackedLinear.from_parametrized(quantized_linear(QUANTIZERS["exp1_2bit_per_channel"]))
    target = PackedLinear(IN, OUT, bits=2, block_size=None, zero_point=True)
    target.load_state_dict(source.state_dict())
    x = torch.randn(4, IN)
    assert torch.equal(target(x), source(x))


def test_plain_linear_is_refused_with_what_it_has():
    with pytest.raises(ConfigError, match=r"exactly one fake quantizer, got parametrizations \[\]"):
        PackedLinear.from_parametrized(nn.Linear(4, 4))
