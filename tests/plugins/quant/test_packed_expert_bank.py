"""PackedExpertBank: each expert's weight is the fake-quantized one, a MoE layer whose stacks it
stands in for computes what the fake-quantized layer computes (every dispatch, after the CPU
transform), expanding one expert's weight at a time; packed storage and state-dict keys."""
from __future__ import annotations

import pytest
import torch
from torch.nn.utils import parametrize

from speechforge.errors import ConfigError
from speechforge.modules.inference_transform import optimize_for_cpu_inference
from speechforge.registry import build_component
from speechforge_plugins.moe.moe_feed_forward import MoEFeedForward
from speechforge_plugins.quant import packed_buffers
from speechforge_plugins.quant.absmean_binary_weight import AbsmeanBinaryWeight
from speechforge_plugins.quant.minmax_weight import MinMaxWeight
from speechforge_plugins.quant.packed_expert_bank import PackedExpertBank
from speechforge_plugins.quant.weight_quantizer import replace_module

E, D, H = 4, 32, 48
BANKS = ("w_1", "w_gate", "w_2")

QUANTIZERS = {
    "exp4_binary_per_channel": lambda w, name: AbsmeanBinaryWeight(w, name=name, block_size=None),
    "exp5_binary_blocks_int8": lambda w, name: AbsmeanBinaryWeight(w, name=name, block_size=16, scale_dtype="int8"),
    "exp1_2bit_per_channel": lambda w, name: MinMaxWeight(w, name=name, bits=2),
    "exp2_2bit_blocks_clip_int8": lambda w, name: MinMaxWeight(
        w, name=name, bits=2, block_size=16, learn_clip=True, scale_dtype="int8"
    ),
}


def moe_layer(**kwargs) -> MoEFeedForward:
    config = {"type": "moe", "num_experts": E, "top_k": 2, "hidden": H, "gated": True, "dropout": 0.0, **kwargs}
    return build_component("ffn", config, "ffn", d_model=D)


def quantized_moe(setting: str, **kwargs) -> MoEFeedForward:
    """A gated MoE layer with every stacked weight fake-quantized (minmax grids moved off their
    start, as after some training)."""
    torch.manual_seed(0)
    layer = moe_layer(**kwargs)
    for bank in BANKS:
        parametrize.register_parametrization(layer, bank, QUANTIZERS[setting](getattr(layer, bank), f"ffn.{bank}"))
        quantizer = getattr(layer.parametrizations, bank)[0]
        if isinstance(quantizer, MinMaxWeight):
            with torch.no_grad():
                quantizer.scale.mul_(0.7)
                quantizer.zero_point.add_(0.01)
    return layer.eval()


def packed_moe(quantized: MoEFeedForward, **kwargs) -> MoEFeedForward:
    """The layer of ``quantized`` (built with ``kwargs``) with packed banks for its stacks, as
    the export and loading make it."""
    packed = moe_layer(**kwargs).eval()
    for bank in BANKS:
        replace_module(packed, bank, PackedExpertBank.from_parametrized(quantized, bank))
    floats = {key: value for key, value in quantized.state_dict().items() if not key.startswith("parametrizations.")}
    packed.load_state_dict(floats, strict=False)  # the router and the biases
    return packed


@pytest.mark.parametrize("setting", sorted(QUANTIZERS))
def test_every_expert_is_its_fake_quantized_weight(setting):
    layer = quantized_moe(setting)
    for bank in BANKS:
        packed = PackedExpertBank.from_parametrized(layer, bank)
        with torch.no_grad():
            stack = getattr(layer, bank)  # (E, O, I), the fake-quantized stack
        for e in range(E):
            torch.testing.assert_close(packed[e], stack[e], rtol=0, atol=0)


@pytest.mark.parametrize("dispatch", ["grouped", "padded"])
@pytest.mark.parametrize("setting", ["exp5_binary_blocks_int8", "exp2_2bit_blocks_clip_int8"])
def test_moe_layer_on_packed_banks_equals_the_fake_quantized_layer(setting, dispatch):
    quantized = quantized_moe(setting, dispatch=dispatch)
    packed = packed_moe(quantized, dispatch=dispatch)
    x = torch.randn(2, 9, D)
    with torch.no_grad():
        expected = quantized(x)
        torch.testing.assert_close(packed(x), expected, rtol=1e-4, atol=1e-5)
        transformed = optimize_for_cpu_inference(packed)
        assert transformed._packer is None  # oneDNN copies would expand the whole banks
        torch.testing.assert_close(transformed(x), expected, rtol=1e-4, atol=1e-5)


def test_the_forward_expands_one_experts_weight_at_a_time(monkeypatch):
    packed = packed_moe(quantized_moe("exp4_binary_per_channel", dispatch="padded"), dispatch="padded")
    unpacked = []
    real_unpack = packed_buffers.unpack_bits

    def recording_unpack(codes, bits, length):
        out = real_unpack(codes, bits, length)
        unpacked.append(tuple(out.shape))
        return out

    monkeypatch.setattr(packed_buffers, "unpack_bits", recording_unpack)
    with torch.no_grad():
        packed(torch.randn(1, 40, D))  # 80 assignments: every expert runs
    assert sorted(set(unpacked)) == [(D, 1, H), (H, 1, D)]  # (O, NB, W) of one expert
    assert len(unpacked) == len(BANKS) * E


def test_banks_stay_packed_and_state_dict_keys_are_pinned():
    packed = packed_moe(quantized_moe("exp2_2bit_blocks_clip_int8"))
    state = packed.state_dict()
    bank_keys = ["codes", "scale", "scale_step", "zero_point", "zero_point_step"]
    assert sorted(state) == sorted(
        ["_extra_state", "b_1", "b_2", "b_gate", "gate.weight", *(f"{b}.{k}" for b in BANKS for k in bank_keys)]
    )
    assert state["w_1.codes"].dtype == torch.uint8 and state["w_1.codes"].shape == (E, H, D // 16, 16 * 2 // 8)
    assert state["w_2.scale"].dtype == torch.int8 and state["w_2.scale"].shape == (E, D, H // 16)
    assert all(p.dim() < 3 for p in packed.parameters())  # no float stack left
    binary = PackedExpertBank.from_parametrized(quantized_moe("exp4_binary_per_channel"), "w_1")
    assert list(binary.state_dict()) == ["codes", "scale"] and binary.codes.numel() == E * H * D // 8


def test_packed_state_dict_loads_into_an_empty_bank():
    source = PackedExpertBank.from_parametrized(quantized_moe("exp1_2bit_per_channel"), "w_2")
    target = PackedExpertBank(E, D, H, bits=2, block_size=None, zero_point=True)
    target.load_state_dict(source.state_dict())
    assert all(torch.equal(target[e], source[e]) for e in range(E))


def test_an_unquantized_stack_is_refused_with_what_it_has():
    layer = build_component("ffn", {"type": "moe", "num_experts": E, "hidden": H}, "ffn", d_model=D)
    expected = r"MoEFeedForward\.w_1: packing needs exactly one fake quantizer, got parametrizations \[\]"
    with pytest.raises(ConfigError, match=expected):
        PackedExpertBank.from_parametrized(layer, "w_1")
