"""The export-friendly forms layers take under a graph exporter give what their fast forms give:
the gathered relative shift, the one-pass subsampling, the flash plugin's one-call SDPA."""
from __future__ import annotations

import pytest
import torch

from speechforge.modules import rel_multi_head_attention, subsampling
from speechforge.modules.rel_multi_head_attention import rel_shift, rel_shift_by_gather
from speechforge.modules.subsampling import Conv2dSubsampling


@pytest.mark.parametrize("q_len,key_len", [(1, 1), (7, 7), (5, 12), (16, 80)])
def test_rel_shift_by_gather_equals_the_strided_view(q_len, key_len):
    scores = torch.randn(2, 3, q_len, key_len + q_len - 1)
    assert torch.equal(rel_shift_by_gather(scores, key_len), rel_shift(scores, key_len))
    transposed = scores.transpose(0, 1).contiguous().transpose(0, 1)  # another memory layout
    assert torch.equal(rel_shift_by_gather(transposed, key_len), rel_shift(scores, key_len))


def test_rel_shift_takes_the_gather_under_an_exporter(monkeypatch):
    calls = []
    monkeypatch.setattr(rel_multi_head_attention, "is_exporting", lambda: True)
    monkeypatch.setattr(rel_multi_head_attention, "rel_shift_by_gather", lambda s, k: calls.append(k) or s[..., :k])
    rel_shift(torch.randn(1, 1, 3, 7), 5)
    assert calls == [5]


def test_subsampling_in_one_pass_equals_the_split(monkeypatch):
    layer = Conv2dSubsampling(20, 16, 4, 8).eval()
    feats, lengths = torch.randn(2, 1200, 20), torch.tensor([1200, 900])  # above the split step
    with torch.no_grad():
        split, split_lens = layer(feats, lengths)
        monkeypatch.setattr(subsampling, "is_exporting", lambda: True)
        whole, whole_lens = layer(feats, lengths)
    assert torch.equal(split_lens, whole_lens)
    assert (split - whole).abs().max() <= 1e-5


@pytest.mark.parametrize("relative", [False, True])
@pytest.mark.parametrize("masked", ["none", "padding", "chunk"])
def test_flash_one_call_sdpa_equals_the_blocked_path(monkeypatch, relative, masked):
    from speechforge_plugins.flash_attention import kernels
    from speechforge_plugins.flash_attention.plugin import build_flash_attention

    layer = build_flash_attention(d_model=16, heads=2, relative=relative, query_block=4).eval()
    x = torch.randn(2, 11, 16)
    pos_emb = torch.randn(1, 21, 16) if relative else None
    mask = None
    if masked != "none":
        mask = (torch.arange(11) < torch.tensor([[11], [7]])).unsqueeze(1)  # (B, 1, T)
        if masked == "chunk":
            chunk = torch.arange(11) // 3
            mask = mask & (chunk.unsqueeze(0) <= chunk.unsqueeze(1)).unsqueeze(0)  # (B, T, T)
    with torch.no_grad():
        blocked, _ = layer(x, x, x, mask, pos_emb)
        monkeypatch.setattr(kernels, "is_exporting", lambda: True)
        whole, _ = layer(x, x, x, mask, pos_emb)
    assert (blocked - whole).abs().max() <= 1e-5
