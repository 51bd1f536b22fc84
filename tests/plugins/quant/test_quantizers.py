"""The model-level quantizers: registered through the plugin, keys checked, the paper's default
targets, glob targets and their errors, and a quantized model's output equal to the float model
whose target weights hold their dequantized values, in training, in inference and after
optimize_for_cpu_inference."""
from __future__ import annotations

from operator import attrgetter

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from speechforge.builder import build_model
from speechforge.errors import ConfigError
from speechforge.modules.inference_transform import optimize_for_cpu_inference
from speechforge.plugins import default_host
from speechforge_plugins.quant.absmean_binary_quantizer import AbsmeanBinaryQuantizer
from speechforge_plugins.quant.minmax_quantizer import MinMaxQuantizer
from speechforge_plugins.quant.minmax_weight import MinMaxWeight

D = 64


def conformer_config(ffn: dict | None = None, quantizer: dict | None = None, num_blocks: int = 2) -> dict:
    """A Conformer-CTC of width 64 (relative attention, macaron FFNs, conv module; 2 blocks by
    default), without dropout or SpecAugment so that training-mode outputs are deterministic."""
    config = {
        "vocab_size": 12,
        "frontend": {"type": "fbank", "num_mel_bins": 40},
        "encoder": {
            "type": "conformer", "d_model": D, "heads": 4, "num_blocks": num_blocks, "dropout": 0.0,
            "subsampling_channels": 8, "attention": {"type": "rel_mha", "dropout": 0.0},
            "ffn": ffn or {"type": "dense", "hidden": 128, "dropout": 0.0},
            "encoder_block": {"type": "conformer", "conv_kernel": 5},
        },
        "losses": [{"type": "ctc", "weight": 1.0}],
    }  # fmt: skip
    return config if quantizer is None else {**config, "quantizer": quantizer}


def parametrized_weights(model: nn.Module) -> list[str]:
    return sorted(
        f"{name}.{weight}"
        for name, module in model.named_modules()
        if parametrize.is_parametrized(module)
        for weight in module.parametrizations
    )


def test_both_quantizers_are_registered_by_the_plugin():
    registry = default_host().registry
    assert registry.get("quantizer", "absmean_binary").factory is AbsmeanBinaryQuantizer
    assert registry.get("quantizer", "minmax").factory is MinMaxQuantizer
    assert registry.get("quantizer", "minmax").owner == "quant"


def test_default_targets_are_the_encoders_linear_layers_and_nothing_else():
    model = build_model(conformer_config(quantizer={"type": "absmean_binary", "block_size": 32}))
    per_block = [
        "conv_module.pointwise_conv1.weight", "conv_module.pointwise_conv2.weight",
        "feed_forward.w_1.weight", "feed_forward.w_2.weight",
        "feed_forward_macaron.w_1.weight", "feed_forward_macaron.w_2.weight",
        "self_attn.linear_out.weight", "self_attn.linear_pos.weight", "self_attn.linear_qkv.weight",
    ]  # fmt: skip
    assert parametrized_weights(model) == sorted(f"encoder.blocks.{b}.{w}" for b in (0, 1) for w in per_block)
    assert not parametrize.is_parametrized(model.encoder.embed.out)  # the subsampling's projection
    assert not parametrize.is_parametrized(model.ctc.ctc_lo)
    assert not parametrize.is_parametrized(model.encoder.blocks[0].conv_module.depthwise_conv)


def test_default_targets_take_moe_expert_banks_and_leave_their_router():
    moe = {"type": "moe", "num_experts": 3, "top_k": 2, "hidden": 128, "dropout": 0.0}
    model = build_model(conformer_config(ffn=moe, quantizer={"type": "minmax", "bits": 2}))
    ffn = model.encoder.blocks[0].feed_forward
    assert parametrize.is_parametrized(ffn, "w_1") and parametrize.is_parametrized(ffn, "w_2")
    assert ffn.parametrizations.w_1[0].shape == (3, 128, D)
    assert not parametrize.is_parametrized(ffn.gate)


def test_glob_targets_select_by_module_name():
    quantizer = {"type": "absmean_binary", "block_size": 8, "targets": ["encoder.blocks.1.*.w_?", "encoder.embed.out"]}
    model = build_model(conformer_config(quantizer=quantizer))
    assert parametrized_weights(model) == [
        "encoder.blocks.1.feed_forward.w_1.weight", "encoder.blocks.1.feed_forward.w_2.weight",
        "encoder.blocks.1.feed_forward_macaron.w_1.weight", "encoder.blocks.1.feed_forward_macaron.w_2.weight",
        "encoder.embed.out.weight",
    ]  # fmt: skip


def test_a_pattern_matching_nothing_is_an_error_naming_it():
    quantizer = {"type": "absmean_binary", "targets": ["encoder.blocks.*.feed_forward.w_1", "encoder.lstm*"]}
    with pytest.raises(ConfigError, match=r"quantizer\.targets\.1: 'encoder\.lstm\*' matches no linear layer or expert bank"):
        build_model(conformer_config(quantizer=quantizer))


def test_a_block_that_does_not_divide_a_contraction_dim_names_the_layer():
    with pytest.raises(ConfigError, match=r"encoder\.blocks\.0\.feed_forward_macaron\.w_1: block_size 48 does not divide the contraction dim 64"):
        build_model(conformer_config(quantizer={"type": "absmean_binary", "block_size": 48}))


def test_keys_are_checked_like_any_components():
    with pytest.raises(ConfigError, match=r"quantizer\.block: unknown key for quantizer 'absmean_binary'; did you mean block_size\?"):
        build_model(conformer_config(quantizer={"type": "absmean_binary", "block": 64}))
    with pytest.raises(ConfigError, match=r"quantizer\.scale_dtype"):
        build_model(conformer_config(quantizer={"type": "minmax", "scale_dtype": "int4"}))
    with pytest.raises(ConfigError, match=r"quantizer\.bits"):
        build_model(conformer_config(quantizer={"type": "minmax", "bits": 3}))


def float_model_of(quantized: nn.Module, config: dict, dequantized: bool) -> nn.Module:
    """The float model of ``config`` holding ``quantized``'s tensors, each target weight as its
    dequantized value (what the parametrization computes) or as the float original."""
    model = build_model({k: v for k, v in config.items() if k != "quantizer"})
    own = quantized.state_dict()
    state = {}
    with torch.no_grad():
        for key in model.state_dict():
            if key in own:
                state[key] = own[key]
            elif dequantized:
                state[key] = attrgetter(key)(quantized).detach().clone()
            else:
                module, _, weight = key.rpartition(".")
                state[key] = own[f"{module}.parametrizations.{weight}.original"]
    model.load_state_dict(state)
    return model


QUANTIZERS = {
    "exp5_binary_blocks": {"type": "absmean_binary", "block_size": 32},
    "exp4_binary_per_channel_int8": {"type": "absmean_binary", "block_size": None, "scale_dtype": "int8"},
    "exp1_2bit_per_channel": {"type": "minmax", "bits": 2},
    "exp2_2bit_blocks_learn_clip_int8": {"type": "minmax", "bits": 2, "block_size": 16, "learn_clip": True, "scale_dtype": "int8"},
}


@pytest.mark.parametrize(
    ("quantizer", "moe"),
    [(QUANTIZERS[name], moe) for name, moe in zip(QUANTIZERS, (False, True, False, True))],
    ids=[f"{name}-{ffn}" for name, ffn in zip(QUANTIZERS, ("dense", "moe", "dense", "moe"))],
)
def test_a_quantized_model_computes_with_the_dequantized_weights_on_every_path(quantizer, moe):
    ffn = {"type": "moe", "num_experts": 2, "top_k": 1, "hidden": 128, "dropout": 0.0} if moe else None
    config = conformer_config(ffn=ffn, quantizer=quantizer, num_blocks=1)  # one block has every kind of target
    quantized = build_model(config)
    with torch.no_grad():
        for module in quantized.modules():
            if isinstance(module, MinMaxWeight):  # as after some training: the grid off its min/max start
                module.scale.mul_(0.8)
    reference = float_model_of(quantized, config, dequantized=True)
    speech, lens = torch.randn(2, 8000), torch.tensor([8000, 6000])

    def run(model: nn.Module) -> torch.Tensor:
        torch.manual_seed(1)  # the same training-mode draws (the frontend's dither) for every model
        return model.encode(speech, lens)[0]

    expected = run(reference.train())
    assert not torch.allclose(run(float_model_of(quantized, config, dequantized=False).train()), expected, atol=1e-3)
    torch.testing.assert_close(run(quantized.train()), expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(run(quantized.eval()), run(reference.eval()), rtol=1e-5, atol=1e-5)
        transformed = optimize_for_cpu_inference(quantized)
        assert parametrized_weights(transformed) == parametrized_weights(quantized)  # left as they are
        torch.testing.assert_close(run(transformed), run(optimize_for_cpu_inference(reference)), rtol=1e-4, atol=1e-5)
