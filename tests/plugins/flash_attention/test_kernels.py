"""Kernel choice, and the flash-attn call glue (unpadding, cu_seqlens) against a stand-in.

flash-attn needs CUDA; here a pure-PyTorch stand-in with flash-attn's documented semantics
takes its place, so the varlen bookkeeping is checked on any machine.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from speechforge.modules.mask import padding_mask
from speechforge.modules.multi_head_attention import MultiHeadAttention
from speechforge_plugins.flash_attention import kernels
from speechforge_plugins.flash_attention.flash_attention import FlashAttention

D_MODEL, HEADS = 32, 4


def fake_flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None):
    """flash_attn_func on (B, T, H, dk)."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), scale=softmax_scale)
    return out.transpose(1, 2)


class FakeVarlen:
    """flash_attn_varlen_func on packed (total, H, dk) tokens; records its arguments."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0, softmax_scale=None):
        self.calls.append({"total_k": k.size(0), "cu_k": cu_seqlens_k.tolist(), "cu_q": cu_seqlens_q.tolist(),
                           "max_q": max_seqlen_q, "max_k": max_seqlen_k, "dtype": cu_seqlens_k.dtype})
        outs = []
        for i in range(cu_seqlens_q.numel() - 1):
            qs = q[cu_seqlens_q[i] : cu_seqlens_q[i + 1]].transpose(0, 1)  # (H, Tq, dk)
            ks = k[cu_seqlens_k[i] : cu_seqlens_k[i + 1]].transpose(0, 1)
            vs = v[cu_seqlens_k[i] : cu_seqlens_k[i + 1]].transpose(0, 1)
            outs.append(F.scaled_dot_product_attention(qs, ks, vs, scale=softmax_scale).transpose(0, 1))
        return torch.cat(outs)


@pytest.fixture
def fake_flash_attn(monkeypatch: pytest.MonkeyPatch) -> FakeVarlen:
    varlen = FakeVarlen()
    monkeypatch.setattr(kernels, "flash_attn_func", fake_flash_attn_func)
    monkeypatch.setattr(kernels, "flash_attn_varlen_func", varlen)
    monkeypatch.setattr(kernels, "flash_attn_applies", lambda q, mask, position_bias: True)
    return varlen


def make_pair() -> tuple[MultiHeadAttention, FlashAttention]:
    torch.manual_seed(0)
    reference = MultiHeadAttention(d_model=D_MODEL, heads=HEADS, use_sdpa=False)
    flash = FlashAttention(d_model=D_MODEL, heads=HEADS)
    flash.load_state_dict(reference.state_dict())
    return reference, flash


def test_varlen_path_drops_padded_keys_and_matches_reference(fake_flash_attn: FakeVarlen) -> None:
    reference, flash = make_pair()
    lengths = torch.tensor([9, 5, 0])
    x = torch.randn(3, 9, D_MODEL)
    mask = padding_mask(lengths, 9).unsqueeze(1)
    expected, _ = reference(x, x, x, mask)
    actual, _ = flash(x, x, x, mask)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)
    assert torch.equal(actual[2], torch.zeros(9, D_MODEL))  # no valid key: zeros
    # the keyless utterance attends to all its keys inside the kernel, then is zeroed
    assert fake_flash_attn.calls == [
        {"total_k": 9 + 5 + 9, "cu_k": [0, 9, 14, 23], "cu_q": [0, 9, 18, 27], "max_q": 9, "max_k": 9,
         "dtype": torch.int32}
    ]


def test_unmasked_path_matches_reference(fake_flash_attn: FakeVarlen) -> None:
    reference, flash = make_pair()
    x = torch.randn(2, 7, D_MODEL)
    torch.testing.assert_close(flash(x, x, x, None)[0], reference(x, x, x, None)[0], atol=1e-5, rtol=0)
    assert fake_flash_attn.calls == []


def test_flash_attn_is_not_chosen_on_cpu_or_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "flash_attn_varlen_func", FakeVarlen())
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        q = torch.zeros(1, HEADS, 3, 8, dtype=dtype)
        assert not kernels.flash_attn_applies(q, None, None)


def test_flash_attn_is_not_chosen_without_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "flash_attn_varlen_func", None)
    assert not kernels.flash_attn_applies(torch.zeros(1, HEADS, 3, 8, dtype=torch.float16), None, None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_half_matches_fp32_reference(dtype: torch.dtype) -> None:
    reference, flash = make_pair()
    reference, flash = reference.cuda(), flash.cuda().to(dtype)
    x = torch.randn(3, 64, D_MODEL, device="cuda")
    mask = padding_mask(torch.tensor([64, 40, 1], device="cuda"), 64).unsqueeze(1)
    expected, _ = reference(x, x, x, mask)
    actual, _ = flash(x.to(dtype), x.to(dtype), x.to(dtype), mask)
    torch.testing.assert_close(actual.float(), expected, atol=2e-2, rtol=0)
