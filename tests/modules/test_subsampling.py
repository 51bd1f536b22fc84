"""The subsampling's per-layer norm: a LayerNorm over the channels after each conv, so that the
long-input split and streaming windows still equal one pass; unknown norms are refused."""
from __future__ import annotations

import pytest
import torch

from speechforge.errors import ConfigError
from speechforge.modules import subsampling
from speechforge.modules.subsampling import ChannelLayerNorm, Conv2dSubsampling


def test_layer_norm_follows_each_conv():
    module = Conv2dSubsampling(20, 16, 4, channels=8, norm="layer_norm")
    kinds = [type(m).__name__ for m in module.conv]
    assert kinds == ["Conv2d", "ChannelLayerNorm", "ReLU", "Conv2d", "ChannelLayerNorm", "ReLU"]
    x = torch.randn(2, 8, 5, 3)
    norm = ChannelLayerNorm(8)
    torch.nn.init.normal_(norm.norm.weight)
    expected = torch.nn.functional.layer_norm(x.permute(0, 2, 3, 1), (8,), norm.norm.weight, norm.norm.bias)
    torch.testing.assert_close(norm(x), expected.permute(0, 3, 1, 2))


def test_split_and_windows_equal_one_pass(monkeypatch):
    module = Conv2dSubsampling(20, 16, 4, channels=8, norm="layer_norm")
    feats = torch.randn(2, 301, 20)
    whole, lens = module(feats, torch.tensor([301, 250]))
    monkeypatch.setattr(subsampling, "_CHUNK_ELEMENTS", 1)  # force the long-input split
    split, _ = module(feats, torch.tensor([301, 250]))
    torch.testing.assert_close(split, whole)
    window = module.chunk_window(5)
    second, _ = module(feats[:, window.stride : window.stride + window.frames], torch.tensor([window.frames] * 2))
    torch.testing.assert_close(second, whole[:, 5:10])
    assert lens.tolist() == [74, 61]


def test_unknown_norm_is_refused():
    with pytest.raises(ConfigError, match="subsampling_norm: must be one of none, layer_norm, got 'batch_norm'"):
        Conv2dSubsampling(20, 16, 4, norm="batch_norm")
