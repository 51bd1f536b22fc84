"""Attention: SDPA path equals the materialised-score reference, rel_shift equals a naive
gather, streaming caches equal full attention, empty rows give zeros."""
from __future__ import annotations

import pytest
import torch

from speechforge.modules.mask import chunk_attention_mask, padding_mask
from speechforge.modules.multi_head_attention import MultiHeadAttention
from speechforge.modules.rel_multi_head_attention import RelPositionMultiHeadAttention, rel_shift
from speechforge.modules.rel_positional_encoding import RelPositionalEncoding

B, T, D, H = 2, 12, 16, 4


def masks() -> dict[str, torch.Tensor | None]:
    pad = padding_mask(torch.tensor([T, 7]), T).unsqueeze(1)  # (B, 1, T)
    chunk = pad & chunk_attention_mask(T, 4).unsqueeze(0)
    limited = pad & chunk_attention_mask(T, 2, num_left_chunks=1).unsqueeze(0)
    return {"none": None, "padding": pad, "chunk": chunk, "chunk_left1": limited}


def pair(cls):
    fast = cls(d_model=D, heads=H, use_sdpa=True).eval()
    ref = cls(d_model=D, heads=H, use_sdpa=False).eval()
    ref.load_state_dict(fast.state_dict())
    return fast, ref


@pytest.mark.parametrize("mask_name", list(masks()))
@pytest.mark.parametrize("relative", [False, True])
def test_sdpa_equals_reference_outputs_and_gradients(mask_name, relative):
    cls = RelPositionMultiHeadAttention if relative else MultiHeadAttention
    fast, ref = pair(cls)
    mask = masks()[mask_name]
    x = torch.randn(B, T, D)
    pos_emb = RelPositionalEncoding(D, 0.0)(x)[1] if relative else None
    results = []
    for module in (fast, ref):
        xi = x.clone().requires_grad_(True)
        out, cache = module(xi, xi, xi, mask, pos_emb)
        out.square().sum().backward()
        results.append((out, xi.grad, module.linear_qkv.weight.grad))
        assert cache is None
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("use_sdpa", [True, False])
def test_rows_with_nothing_to_attend_are_zero_not_nan(use_sdpa):
    module = MultiHeadAttention(d_model=D, heads=H, use_sdpa=use_sdpa).eval()
    mask = torch.ones(1, T, T, dtype=torch.bool)
    mask[0, 3] = False
    out, _ = module(torch.randn(1, T, D), torch.randn(1, T, D), torch.randn(1, T, D), mask)
    assert torch.isfinite(out).all()
    assert torch.equal(out[0, 3], torch.zeros(D))
    assert out[0, 2].abs().sum() > 0


def test_rel_shift_matches_naive_gather():
    tq, tk = 3, 5
    scores = torch.randn(2, 2, tq, tk + tq - 1)
    shifted = rel_shift(scores, tk)
    for i in range(tq):
        for j in range(tk):
            distance = (tk - tq + i) - j
            assert torch.equal(shifted[:, :, i, j], scores[:, :, i, tk - 1 - distance])


@pytest.mark.parametrize("relative", [False, True])
def test_chunk_by_chunk_with_cache_equals_causal_full(relative):
    cls = RelPositionMultiHeadAttention if relative else MultiHeadAttention
    module = cls(d_model=D, heads=H).eval()
    x = torch.randn(1, T, D)
    enc = RelPositionalEncoding(D, 0.0)
    causal = chunk_attention_mask(T, 4).unsqueeze(0)
    full, _ = module(x, x, x, causal, enc(x)[1] if relative else None)
    cache = torch.zeros(1, H, 0, 2 * D // H)
    outs = []
    for start in range(0, T, 4):
        chunk = x[:, start : start + 4]
        pos_emb = enc(chunk, offset=start)[1] if relative else None
        out, cache = module(chunk, chunk, chunk, None, pos_emb, cache)
        outs.append(out)
    assert cache.shape == (1, H, T, 2 * D // H)
    torch.testing.assert_close(torch.cat(outs, dim=1), full, atol=1e-5, rtol=1e-5)


def test_rel_attention_requires_pos_emb():
    module = RelPositionMultiHeadAttention(d_model=D, heads=H)
    x = torch.randn(1, 3, D)
    with pytest.raises(ValueError, match="rel_mha needs pos_emb"):
        module(x, x, x, None)


def test_heads_must_divide_d_model():
    with pytest.raises(ValueError, match=r"d_model \(10\) must be divisible by heads \(4\)"):
        MultiHeadAttention(d_model=10, heads=4)


def test_cross_attention_shapes():
    module = MultiHeadAttention(d_model=D, heads=H)
    out, _ = module(torch.randn(2, 5, D), torch.randn(2, 9, D), torch.randn(2, 9, D), torch.ones(2, 1, 9, dtype=torch.bool))
    assert out.shape == (2, 5, D)
