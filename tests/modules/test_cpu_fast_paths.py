"""CPU fast paths of the Conformer equal the plain ops: oneDNN fused linears (inference),
chunked Conv2d subsampling, the matmul/channels-last convolution module, the rand-mask
dropout, and the whole encoder against its plain path and against torch.compile."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import speechforge.modules.subsampling as subsampling
from speechforge.modules.convolution import ConformerConvolution
from speechforge.modules.dropout import Dropout
from speechforge.modules.fused_linear import WeightPacker, linear, plain_kernels
from speechforge.modules.subsampling import Conv2dSubsampling
from speechforge.plugins import default_host

D = 32
NO_REORDER = "runs where torch has oneDNN's weight reorder (mkldnn._reorder_linear_weight); this build has none"


def encoder(use_sdpa: bool = True, num_blocks: int = 2) -> nn.Module:
    config = {
        "type": "conformer",
        "d_model": D,
        "heads": 4,
        "num_blocks": num_blocks,
        "ffn": {"type": "dense", "hidden": 64, "activation": "swish"},
        "attention": {"type": "rel_mha", "use_sdpa": use_sdpa},
        "encoder_block": {"type": "conformer", "conv_kernel": 7},
    }
    return default_host().registry.build("encoder", config, "encoder", input_dim=20)


@pytest.mark.parametrize("activation", [None, nn.ReLU(), nn.SiLU(), nn.GELU(), nn.GELU(approximate="tanh"), nn.Tanh()])
def test_fused_linear_equals_linear_then_activation(activation):
    x, w, b = torch.randn(3, 5, 16), torch.randn(24, 16), torch.randn(24)
    expected = F.linear(x, w, b)
    expected = expected if activation is None else activation(expected)
    with torch.no_grad():
        torch.testing.assert_close(linear(x, w, b, activation), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(linear(x, w, None), F.linear(x, w), atol=1e-5, rtol=1e-5)


def test_fused_linear_keeps_autograd_when_a_gradient_is_needed():
    x = torch.randn(4, 8, requires_grad=True)
    w = torch.randn(6, 8, requires_grad=True)
    linear(x, w, None, nn.SiLU()).sum().backward()
    xr, wr = x.detach().requires_grad_(), w.detach().requires_grad_()
    F.silu(F.linear(xr, wr)).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad)
    torch.testing.assert_close(w.grad, wr.grad)


@pytest.mark.parametrize("rows", [1, 7, 64])
def test_packed_weights_give_the_plain_weights_results(rows):
    w, stack, b = torch.randn(24, 16), torch.randn(3, 24, 16), torch.randn(24)
    x = torch.randn(rows, 16)
    with torch.no_grad():
        packed = WeightPacker().pack(x, (w, None, stack), rows_hint=8)
        if packed is None:
            pytest.skip(NO_REORDER)
        single, absent, per_expert = packed
        assert absent is None and len(per_expert) == 3
        torch.testing.assert_close(linear(x, single, b, nn.SiLU()), F.silu(F.linear(x, w, b)), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(linear(x, per_expert[2], None), F.linear(x, stack[2]), atol=1e-5, rtol=1e-5)


def test_packed_weights_follow_every_weight_change():
    w = nn.Parameter(torch.randn(24, 16))
    x, packer = torch.randn(5, 16), WeightPacker()
    with torch.no_grad():
        first = packer.pack(x, (w,), 5)
        if first is None:
            pytest.skip(NO_REORDER)
        assert packer.pack(x, (w,), 5)[0] is first[0]  # unchanged weight: the same copy
        w.mul_(2.0)  # in place, as an optimizer step or load_state_dict does
        torch.testing.assert_close(linear(x, packer.pack(x, (w,), 5)[0]), F.linear(x, w), atol=1e-5, rtol=1e-5)
        w.data = torch.randn(24, 16)  # new storage
        torch.testing.assert_close(linear(x, packer.pack(x, (w,), 5)[0]), F.linear(x, w), atol=1e-5, rtol=1e-5)


def test_weights_are_not_packed_where_linear_would_not_fuse():
    w = nn.Parameter(torch.randn(24, 16))
    x, packer = torch.randn(5, 16), WeightPacker()
    assert packer.pack(x, (w,), 5) is None  # a gradient is needed
    with torch.no_grad():
        assert packer.pack(x.double(), (w,), 5) is None  # dtype mismatch
        with plain_kernels():
            assert packer.pack(x, (w,), 5) is None


@pytest.mark.parametrize("factor", [4, 6, 8])
def test_chunked_subsampling_equals_one_pass(factor, monkeypatch):
    sub = Conv2dSubsampling(20, 16, factor)
    x = torch.randn(2, 150, 20)
    lengths = torch.tensor([150, 150])
    whole, whole_lens = sub(x, lengths)
    whole_grad = torch.autograd.grad(whole.square().sum(), sub.conv[0].weight)[0]
    monkeypatch.setattr(subsampling, "_CHUNK_ELEMENTS", 1)
    monkeypatch.setattr(subsampling, "_MIN_CHUNK_FRAMES", 3)  # several chunks, a short last one
    chunked, chunked_lens = sub(x, lengths)
    chunked_grad = torch.autograd.grad(chunked.square().sum(), sub.conv[0].weight)[0]
    assert torch.equal(whole_lens, chunked_lens)
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(chunked_grad, whole_grad, atol=1e-4, rtol=1e-5)


def conv1d_reference(conv: ConformerConvolution, x: torch.Tensor, pad_mask: torch.Tensor | None) -> torch.Tensor:
    """The module written with channels-first Conv1d layers, as ESPnet/WeNet do."""
    pointwise1, depthwise, pointwise2 = conv.pointwise_conv1, conv.depthwise_conv, conv.pointwise_conv2
    h = F.glu(F.conv1d(x.transpose(1, 2), pointwise1.weight.unsqueeze(-1), pointwise1.bias), dim=1)  # (B, D, T)
    if pad_mask is not None:
        h = h.masked_fill(~pad_mask, 0.0)
    if conv.causal:
        h = F.pad(h, (conv.left_context, 0))
    h = F.conv1d(h, depthwise.weight.squeeze(2), depthwise.bias, padding=depthwise.padding[1], groups=depthwise.groups)
    h = conv.norm(h.transpose(1, 2)).transpose(1, 2) if isinstance(conv.norm, nn.LayerNorm) else conv.norm(h)
    h = F.conv1d(conv.activation(h), pointwise2.weight.unsqueeze(-1), pointwise2.bias)
    if pad_mask is not None:
        h = h.masked_fill(~pad_mask, 0.0)
    return h.transpose(1, 2)


@pytest.mark.parametrize("causal,norm", [(False, "batch_norm"), (True, "layer_norm"), (True, "batch_norm")])
@pytest.mark.parametrize("training", [True, False])
def test_convolution_module_equals_conv1d_formulation(causal, norm, training):
    conv = ConformerConvolution(D, 7, causal=causal, norm=norm).train(training)
    x = torch.randn(3, 20, D, requires_grad=True)
    pad_mask = torch.ones(3, 1, 20, dtype=torch.bool)
    pad_mask[1, :, 13:] = False
    for mask in (None, pad_mask):
        out, _ = conv(x, mask)
        grad = torch.autograd.grad(out.square().sum(), x)[0]
        ref = conv1d_reference(conv, x, mask)
        ref_grad = torch.autograd.grad(ref.square().sum(), x)[0]
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(grad, ref_grad, atol=1e-4, rtol=1e-5)


def test_depthwise_conv_runs_in_fp32_under_cpu_autocast(monkeypatch):
    # oneDNN's bf16 depthwise kernel takes minutes to JIT for some shapes; fp32 does not
    seen = []
    conv2d = F.conv2d
    monkeypatch.setattr(F, "conv2d", lambda x, w, *a, **k: seen.append((x.dtype, w.dtype)) or conv2d(x, w, *a, **k))
    conv = ConformerConvolution(D, 7)
    x = torch.randn(3, 20, D)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = conv(x)
    assert seen == [(torch.float32, torch.float32)]
    torch.testing.assert_close(out.float(), conv(x)[0], atol=0.05, rtol=0.05)


def test_convolution_cache_carries_the_last_frames():
    conv = ConformerConvolution(D, 7, causal=True, norm="layer_norm").eval()
    x = torch.randn(1, 12, D)
    full, _ = conv(x)
    first, cache = conv(x[:, :5], cache=torch.zeros(1, D, 6))
    second, _ = conv(x[:, 5:], cache=cache)
    assert cache.shape == (1, D, 6)
    torch.testing.assert_close(torch.cat((first, second), dim=1), full, atol=1e-5, rtol=1e-5)


def test_dropout_keeps_one_minus_p_and_rescales():
    torch.manual_seed(0)
    drop = Dropout(0.25)
    x = torch.ones(400, 500, requires_grad=True)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.01
    assert torch.allclose(y[kept], torch.tensor(1 / 0.75))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d(x * mask)/dx is the mask
    assert torch.equal(drop.eval()(x), x)


def test_dropout_rejects_p_of_one():
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\), got 1.0"):
        Dropout(1.0)


@pytest.mark.parametrize("lengths", [[160, 160], [160, 97]])
def test_encoder_fast_paths_equal_plain_path(lengths, monkeypatch):
    torch.manual_seed(0)
    fast = encoder(use_sdpa=True).eval()
    plain = encoder(use_sdpa=False).eval()
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(2, 160, 20)
    lens = torch.tensor(lengths)
    monkeypatch.setattr(subsampling, "_MIN_CHUNK_FRAMES", 8)
    monkeypatch.setattr(subsampling, "_CHUNK_ELEMENTS", 1)
    with torch.no_grad():
        out, out_lens = fast(x, lens)
        with plain_kernels():
            monkeypatch.setattr(subsampling, "_CHUNK_ELEMENTS", 1 << 30)
            ref, ref_lens = plain(x, lens)
    assert torch.equal(out_lens, ref_lens)
    for i, n in enumerate(out_lens.tolist()):
        torch.testing.assert_close(out[i, :n], ref[i, :n], atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_compiled_encoder_equals_eager():
    torch.manual_seed(0)
    model = encoder(num_blocks=1).eval()
    x, lens = torch.randn(2, 120, 20), torch.tensor([120, 120])
    with torch.no_grad():
        eager, _ = model(x, lens)
        compiled, _ = torch.compile(model)(x, lens)
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)
