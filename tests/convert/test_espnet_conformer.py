"""ESPnet Conformer → speechforge conversion: key mapping on a tiny ESPnet-shaped state dict,
strict loading into our encoder, equal outputs against a hand-written ESPnet-style forward,
and errors that name the keys we cannot place."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from speechforge.convert import convert_espnet_conformer
from speechforge.errors import CheckpointError
from speechforge.plugins import default_host

IDIM, D, H, FF, BLOCKS, KERNEL = 20, 16, 2, 32, 2, 5


def our_encoder() -> torch.nn.Module:
    config = {
        "type": "conformer",
        "d_model": D,
        "heads": H,
        "num_blocks": BLOCKS,
        "subsampling": 4,
        "ffn": {"type": "dense", "hidden": FF, "activation": "swish"},
        "encoder_block": {"type": "conformer", "conv_kernel": KERNEL},
    }
    return default_host().registry.build("encoder", config, "encoder", input_dim=IDIM)


def espnet_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under the names and shapes ESPnet's ConformerEncoder (conv2d input,
    macaron, rel_pos latest, conv module) gives them."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) / math.sqrt(shape[-1] if len(shape) > 1 else 4)

    freq = ((IDIM - 1) // 2 - 1) // 2
    sd = {
        "embed.conv.0.weight": rand(D, 1, 3, 3),
        "embed.conv.0.bias": rand(D),
        "embed.conv.2.weight": rand(D, D, 3, 3),
        "embed.conv.2.bias": rand(D),
        "embed.out.0.weight": rand(D, D * freq),
        "embed.out.0.bias": rand(D),
        "after_norm.weight": 1 + rand(D),
        "after_norm.bias": rand(D),
    }
    for n in range(BLOCKS):
        p = f"encoders.{n}."
        sd[p + "self_attn.pos_bias_u"] = rand(H, D // H)
        sd[p + "self_attn.pos_bias_v"] = rand(H, D // H)
        for name in ("linear_q", "linear_k", "linear_v", "linear_out"):
            sd[p + f"self_attn.{name}.weight"] = rand(D, D)
            sd[p + f"self_attn.{name}.bias"] = rand(D)
        sd[p + "self_attn.linear_pos.weight"] = rand(D, D)
        for ff in ("feed_forward", "feed_forward_macaron"):
            sd[p + f"{ff}.w_1.weight"] = rand(FF, D)
            sd[p + f"{ff}.w_1.bias"] = rand(FF)
            sd[p + f"{ff}.w_2.weight"] = rand(D, FF)
            sd[p + f"{ff}.w_2.bias"] = rand(D)
        sd[p + "conv_module.pointwise_conv1.weight"] = rand(2 * D, D, 1)
        sd[p + "conv_module.pointwise_conv1.bias"] = rand(2 * D)
        sd[p + "conv_module.depthwise_conv.weight"] = rand(D, 1, KERNEL)
        sd[p + "conv_module.depthwise_conv.bias"] = rand(D)
        sd[p + "conv_module.norm.weight"] = 1 + rand(D)
        sd[p + "conv_module.norm.bias"] = rand(D)
        sd[p + "conv_module.norm.running_mean"] = rand(D)
        sd[p + "conv_module.norm.running_var"] = 1 + rand(D).abs()
        sd[p + "conv_module.norm.num_batches_tracked"] = torch.tensor(7)
        sd[p + "conv_module.pointwise_conv2.weight"] = rand(D, D, 1)
        sd[p + "conv_module.pointwise_conv2.bias"] = rand(D)
        for norm in ("norm_ff", "norm_mha", "norm_ff_macaron", "norm_conv", "norm_final"):
            sd[p + f"{norm}.weight"] = 1 + rand(D)
            sd[p + f"{norm}.bias"] = rand(D)
    return sd


def espnet_forward(sd: dict[str, torch.Tensor], feats: torch.Tensor) -> torch.Tensor:
    """ESPnet's ConformerEncoder forward (eval, unpadded), written out from its modules:
    rel_shift by zero-pad and view, Swish as x * sigmoid(x), LayerNorm eps 1e-12."""
    x = F.relu(F.conv2d(feats.unsqueeze(1), sd["embed.conv.0.weight"], sd["embed.conv.0.bias"], stride=2))
    x = F.relu(F.conv2d(x, sd["embed.conv.2.weight"], sd["embed.conv.2.bias"], stride=2))
    b, c, t, f = x.shape
    x = F.linear(x.transpose(1, 2).reshape(b, t, c * f), sd["embed.out.0.weight"], sd["embed.out.0.bias"])
    x = x * math.sqrt(D)
    positions = torch.arange(t - 1, -t, -1, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, D, 2, dtype=torch.float32) * -(math.log(10000.0) / D))
    pos_emb = torch.zeros(2 * t - 1, D)
    pos_emb[:, 0::2] = torch.sin(positions * div_term)
    pos_emb[:, 1::2] = torch.cos(positions * div_term)

    def ln(y: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(y, (D,), sd[name + ".weight"], sd[name + ".bias"], eps=1e-12)

    def ffn(y: torch.Tensor, name: str) -> torch.Tensor:
        h = F.linear(y, sd[name + ".w_1.weight"], sd[name + ".w_1.bias"])
        return F.linear(h * torch.sigmoid(h), sd[name + ".w_2.weight"], sd[name + ".w_2.bias"])

    def attention(y: torch.Tensor, p: str) -> torch.Tensor:
        dk = D // H
        q, k, v = (
            F.linear(y, sd[p + f"linear_{n}.weight"], sd[p + f"linear_{n}.bias"]).view(b, t, H, dk)
            for n in "qkv"
        )
        pos = F.linear(pos_emb, sd[p + "linear_pos.weight"]).view(1, -1, H, dk).transpose(1, 2)
        ac = torch.matmul((q + sd[p + "pos_bias_u"]).transpose(1, 2), k.transpose(1, 2).transpose(-2, -1))
        bd = torch.matmul((q + sd[p + "pos_bias_v"]).transpose(1, 2), pos.transpose(-2, -1))
        padded = torch.cat([bd.new_zeros(b, H, t, 1), bd], dim=-1).view(b, H, 2 * t, t)
        bd = padded[:, :, 1:].reshape(b, H, t, 2 * t - 1)[:, :, :, :t]
        probs = torch.softmax((ac + bd) / math.sqrt(dk), dim=-1)
        out = torch.matmul(probs, v.transpose(1, 2)).transpose(1, 2).reshape(b, t, D)
        return F.linear(out, sd[p + "linear_out.weight"], sd[p + "linear_out.bias"])

    def conv(y: torch.Tensor, p: str) -> torch.Tensor:
        y = F.glu(F.conv1d(y.transpose(1, 2), sd[p + "pointwise_conv1.weight"], sd[p + "pointwise_conv1.bias"]), dim=1)
        y = F.conv1d(y, sd[p + "depthwise_conv.weight"], sd[p + "depthwise_conv.bias"], padding=KERNEL // 2, groups=D)
        y = F.batch_norm(
            y, sd[p + "norm.running_mean"], sd[p + "norm.running_var"], sd[p + "norm.weight"], sd[p + "norm.bias"]
        )
        y = y * torch.sigmoid(y)
        return F.conv1d(y, sd[p + "pointwise_conv2.weight"], sd[p + "pointwise_conv2.bias"]).transpose(1, 2)

    for n in range(BLOCKS):
        p = f"encoders.{n}."
        x = x + 0.5 * ffn(ln(x, p + "norm_ff_macaron"), p + "feed_forward_macaron")
        x = x + attention(ln(x, p + "norm_mha"), p + "self_attn.")
        x = x + conv(ln(x, p + "norm_conv"), p + "conv_module.")
        x = x + 0.5 * ffn(ln(x, p + "norm_ff"), p + "feed_forward")
        x = ln(x, p + "norm_final")
    return ln(x, "after_norm")


def test_keys_are_renamed_and_load_strictly():
    sd = espnet_state_dict()
    converted = convert_espnet_conformer(sd)
    assert len(converted) == len(sd) - 4 * BLOCKS  # q, k, v weights and biases merged
    assert converted["blocks.1.self_attn.linear_pos.weight"] is sd["encoders.1.self_attn.linear_pos.weight"]
    assert converted["embed.out.weight"] is sd["embed.out.0.weight"]
    assert "embed.conv.2.bias" in converted and "after_norm.weight" in converted
    model = our_encoder()
    assert set(converted) == set(model.state_dict())
    model.load_state_dict(converted, strict=True)


def test_converted_encoder_computes_espnet_function():
    sd = espnet_state_dict()
    model = our_encoder().eval()
    model.load_state_dict(convert_espnet_conformer(sd))
    feats = torch.randn(2, 67, IDIM)
    with torch.no_grad():
        ours, lens = model(feats, torch.tensor([67, 67]))
        expected = espnet_forward(sd, feats)
    assert lens.tolist() == [expected.size(1)] * 2
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)


def test_prefix_selects_the_encoder_of_a_whole_model_checkpoint():
    model_sd = {f"encoder.{k}": v for k, v in espnet_state_dict().items()}
    model_sd["ctc.ctc_lo.weight"] = torch.zeros(5, D)
    model_sd["decoder.embed.0.weight"] = torch.zeros(5, D)
    converted = convert_espnet_conformer(model_sd, prefix="encoder.")
    assert set(converted) == set(our_encoder().state_dict())


def test_unknown_keys_are_named():
    sd = espnet_state_dict()
    sd["encoders.0.concat_linear.weight"] = torch.zeros(D, 2 * D)
    with pytest.raises(CheckpointError, match=r"encoders\.0\.concat_linear\.weight"):
        convert_espnet_conformer(sd)


def test_missing_prefix_is_an_error():
    with pytest.raises(CheckpointError, match=r"no key of the state dict starts with prefix 'encoder\.'"):
        convert_espnet_conformer(espnet_state_dict(), prefix="encoder.")
