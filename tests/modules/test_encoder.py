"""Encoders and blocks: shapes, padding never leaking into valid frames, pinned parameter
names, subsampling lengths, causal convolution streaming."""
from __future__ import annotations

import pytest
import torch

from speechforge.modules.convolution import ConformerConvolution
from speechforge.modules.mask import padding_mask
from speechforge.modules.subsampling import Conv2dSubsampling
from speechforge.registry import build_component

F = 40


def encoder(kind: str, **extra):
    config = {"type": kind, "d_model": 32, "heads": 4, "num_blocks": 2, "ffn": {"type": "dense", "hidden": 48}, **extra}
    return build_component("encoder", config, "encoder", input_dim=F).eval()


@pytest.mark.parametrize("kind", ["conformer", "transformer"])
@pytest.mark.parametrize("chunk_size", [0, 3])
def test_padding_never_leaks_into_valid_frames(kind, chunk_size):
    model = encoder(kind)
    valid = torch.randn(1, 61, F)
    alone, alone_lens = model(valid, torch.tensor([61]), chunk_size=chunk_size)
    padded = torch.cat([valid, 1e3 * torch.randn(1, 40, F)], dim=1)
    batch = torch.cat([padded, torch.randn(1, 101, F)])
    out, lens = model(batch, torch.tensor([61, 101]), chunk_size=chunk_size)
    assert lens[0] == alone_lens[0] == alone.size(1)
    torch.testing.assert_close(out[:1, : alone.size(1)], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["conformer", "transformer"])
def test_forward_backward_shapes(kind):
    model = encoder(kind).train()
    out, lens = model(torch.randn(3, 100, F), torch.tensor([100, 80, 17]))
    assert out.shape == (3, 24, 32) and lens.tolist() == [24, 19, 3]
    out[0].sum().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "blocks.0" in n)


def test_chunk_mask_limits_the_future():
    model = encoder("conformer", encoder_block={"type": "conformer", "conv_kernel": 5}, causal=True)
    x = torch.randn(1, 101, F)
    out, _ = model(x, torch.tensor([101]), chunk_size=4)
    changed = x.clone()
    changed[:, 60:] += 5.0  # output frame ~14 onwards sees this
    out2, _ = model(changed, torch.tensor([101]), chunk_size=4)
    torch.testing.assert_close(out[:, :12], out2[:, :12])  # chunks 0-2 end before the change
    assert not torch.allclose(out[:, 16:], out2[:, 16:])


def test_conformer_block_state_dict_keys_are_pinned():
    block = encoder("conformer").blocks[0]
    assert sorted({k.rsplit(".", 1)[0] for k in block.state_dict()}) == [
        "conv_module.depthwise_conv",
        "conv_module.norm",
        "conv_module.pointwise_conv1",
        "conv_module.pointwise_conv2",
        "feed_forward.w_1",
        "feed_forward.w_2",
        "feed_forward_macaron.w_1",
        "feed_forward_macaron.w_2",
        "norm_conv",
        "norm_ff",
        "norm_ff_macaron",
        "norm_final",
        "norm_mha",
        "self_attn",
        "self_attn.linear_out",
        "self_attn.linear_pos",
        "self_attn.linear_qkv",
    ]


@pytest.mark.parametrize("factor,right_context", [(4, 6), (6, 10), (8, 14)])
def test_subsampling_lengths_match_outputs(factor, right_context):
    sub = Conv2dSubsampling(F, 16, factor)
    assert sub.right_context == right_context
    for length in (right_context + 1, 57, 100):
        out, lens = sub(torch.randn(1, length, F), torch.tensor([length]))
        assert out.shape == (1, int(lens), 16)
        assert int(lens) == (length - right_context - 1) // factor + 1


def test_subsampling_factor_is_checked():
    with pytest.raises(ValueError, match=r"subsampling factor must be one of \[4, 6, 8\], got 5"):
        Conv2dSubsampling(F, 16, 5)


def test_causal_convolution_streams_with_cache():
    conv = ConformerConvolution(8, kernel_size=5, causal=True, norm="layer_norm").eval()
    x = torch.randn(1, 20, 8)
    full, _ = conv(x)
    cache = torch.zeros(1, 8, 4)
    outs = []
    for start in range(0, 20, 6):
        out, cache = conv(x[:, start : start + 6], None, cache)
        outs.append(out)
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-6, rtol=1e-6)


def test_non_causal_convolution_refuses_a_cache():
    conv = ConformerConvolution(8, kernel_size=5)
    with pytest.raises(ValueError, match="needs a causal convolution"):
        conv(torch.randn(1, 4, 8), None, torch.zeros(1, 8, 4))


def test_convolution_zeroes_padded_frames():
    conv = ConformerConvolution(8, kernel_size=3).eval()
    mask = padding_mask(torch.tensor([5]), 8).unsqueeze(1)
    out, _ = conv(torch.randn(1, 8, 8), mask)
    assert torch.equal(out[0, 5:], torch.zeros(3, 8))
