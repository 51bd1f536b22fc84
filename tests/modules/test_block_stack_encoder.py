"""Streaming and dynamic chunks of the block-stack encoder: chunk-by-chunk encoding with
caches equals the chunk-masked full forward, the block states ``forward_chunk`` carries,
dynamic chunk sampling bounds, and the chunk options' checks."""
from __future__ import annotations

import pytest
import torch

from speechforge.errors import ConfigError
from speechforge.interfaces import EncoderBlock
from speechforge.registry import build_component

F = 40
KERNEL = 5


def encoder(kind: str = "conformer", conv_norm: str | None = "layer_norm", **extra):
    config = {"type": kind, "d_model": 32, "heads": 4, "num_blocks": 2, "causal": True, "ffn": {"type": "dense", "hidden": 48}}
    if kind == "conformer":
        config["encoder_block"] = {"type": "conformer", "conv_kernel": KERNEL, "conv_norm": conv_norm}
    model = build_component("encoder", {**config, **extra}, "encoder", input_dim=F).eval()
    for module in model.modules():  # trained-looking statistics, so batch norm is no identity
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.normal_(1.0, 0.2)
    return model


def stream_one(model, feats: torch.Tensor, chunk: int, left: int):
    """Run ``forward_chunk`` over one utterance the way a client would; returns the encodings
    and the last state."""
    factor, context = model.embed.factor, model.embed.right_context + 1
    window, stride = (chunk - 1) * factor + context, chunk * factor
    state = model.initial_state(1, chunk, left)
    outs = []
    for start in range(0, feats.size(1) - context + 1, stride):
        ys, _, state = model.forward_chunk(feats[:, start : start + window], None, state)
        outs.append(ys)
    return torch.cat(outs, dim=1), state


@pytest.mark.parametrize("kind,conv_norm", [("conformer", "layer_norm"), ("conformer", "batch_norm"), ("transformer", None)])
@pytest.mark.parametrize("chunk,left", [(4, -1), (4, 1), (3, 0), (8, 2)])
def test_forward_chunk_equals_chunk_masked_forward(kind, conv_norm, chunk, left):
    model = encoder(kind, conv_norm)
    feats = torch.randn(1, 117, F)
    full, _ = model(feats, torch.tensor([117]), chunk, left)
    streamed, state = stream_one(model, feats, chunk, left)
    assert streamed.shape == full.shape
    assert (streamed - full).abs().max() <= 1e-4
    kept = full.size(1) if left < 0 else min(full.size(1), chunk * left)
    assert state.offset == full.size(1) and len(state.blocks) == 2
    for block_state in state.blocks:  # only real caches: no convolution state without a convolution
        assert block_state["att"].shape == (1, 4, kept, 2 * 32 // 4)  # (B, H, Tc, 2 * dk)
        assert set(block_state) == ({"att", "cnn"} if kind == "conformer" else {"att"})
        if kind == "conformer":
            assert block_state["cnn"].shape == (1, 32, KERNEL - 1)  # (B, D, kernel - 1)


@pytest.mark.parametrize("chunk,left", [(4, -1), (3, 1), (16, 0)])
def test_batched_chunk_by_chunk_equals_forward_on_every_valid_frame(chunk, left):
    model = encoder()
    lengths = torch.tensor([123, 90, 37, 11])
    feats = torch.randn(4, 123, F)
    full, full_lens = model(feats, lengths, chunk, left)
    streamed, lens = model.forward_chunk_by_chunk(feats, lengths, chunk, left)
    assert torch.equal(lens, full_lens)
    for b, n in enumerate(lens.tolist()):
        assert (streamed[b, :n] - full[b, :n]).abs().max() <= 1e-4


@pytest.mark.parametrize("subsampling", [6, 8])
def test_windows_follow_the_subsampling(subsampling):
    model = encoder(subsampling=subsampling, subsampling_channels=8)
    feats = torch.randn(1, 157, F)
    full, _ = model(feats, torch.tensor([157]), 3, 1)
    streamed, _ = stream_one(model, feats, 3, 1)
    assert streamed.shape == full.shape
    assert (streamed - full).abs().max() <= 1e-4


def test_abs_positions_stream_with_offsets():
    model = encoder("transformer")  # absolute positional encoding needs the frame offset
    feats = torch.randn(1, 99, F)
    full, _ = model(feats, torch.tensor([99]), 4, -1)
    streamed, _ = stream_one(model, feats, 4, -1)
    assert (streamed - full).abs().max() <= 1e-4


def test_non_causal_convolution_cannot_stream():
    model = encoder(causal=False)
    with pytest.raises(ConfigError, match=r"blocks\.0 has a convolution that sees the future"):
        model.forward_chunk_by_chunk(torch.randn(1, 50, F), torch.tensor([50]), 4)


def test_forward_chunk_needs_a_state_per_block():
    state = encoder().initial_state(1, 4)
    state.blocks.pop()
    with pytest.raises(ValueError, match="the state has 1 block states for 2 blocks"):
        encoder().forward_chunk(torch.randn(1, 19, F), None, state)


class Stateless(EncoderBlock):
    """A block that declares no streaming state."""

    def forward(self, x, att_mask, pad_mask, pos_emb=None, cache=None):
        return x, cache


def test_a_block_without_streaming_state_is_named():
    model = encoder()
    model.blocks[1] = Stateless()
    with pytest.raises(ConfigError, match=r"^encoder: blocks\.1 \(Stateless\) has no streaming state, so it cannot stream$"):
        model.initial_state(1, 4)


def test_chunk_window_is_the_subsampling_arithmetic():
    for factor, right_context in ((4, 6), (6, 10), (8, 14)):
        model = encoder(subsampling=factor, subsampling_channels=8)
        window = model.chunk_window(5)
        assert (window.frames, window.stride, window.min_frames) == (4 * factor + right_context + 1, 5 * factor, right_context + 1)
        full, _ = model(torch.randn(1, window.frames, F), torch.tensor([window.frames]))
        assert full.size(1) == 5  # the window gives exactly the chunk
        shorter, _ = model(torch.randn(1, window.frames - 1, F), torch.tensor([window.frames - 1]))
        assert shorter.size(1) == 4


@pytest.mark.parametrize("chunk", [-2, -10])
def test_chunk_size_below_minus_one_is_refused(chunk):
    with pytest.raises(ConfigError, match=rf"chunk_size: must be -1 \(full context\), 0 \(the encoder's own setting\) or N > 0 .*got {chunk}"):
        encoder()(torch.randn(1, 30, F), torch.tensor([30]), chunk)


def test_chunk_size_minus_one_zero_and_n():
    """-1 is full context, 0 the configured behaviour (static chunk here), N chunks of N."""
    static = encoder(static_chunk_size=3)
    feats, lengths = torch.randn(1, 60, F), torch.tensor([60])
    full, _ = static(feats, lengths, -1)
    configured, _ = static(feats, lengths, 0)
    chunked, _ = static(feats, lengths, 3)
    torch.testing.assert_close(configured, chunked)
    assert (full - chunked).abs().max() > 1e-3  # a chunk of 3 does not see what full context sees
    plain = encoder()
    torch.testing.assert_close(plain(feats, lengths, 0)[0], plain(feats, lengths, -1)[0])


def test_dynamic_chunk_sampling_bounds():
    model = encoder(use_dynamic_chunk=True, use_dynamic_left_chunk=True).train()
    for frames in (2, 3, 10, 60, 400):
        seen_full = seen_chunk = False
        for _ in range(300):
            chunk, left = model.sample_chunk(frames)
            if chunk == -1:
                seen_full = True
                assert left == -1
                continue
            seen_chunk = True
            assert 1 <= chunk <= min(25, frames // 2 + 1)
            assert 0 <= left <= max(0, (frames - 1) // chunk - 1)
        assert seen_chunk and (seen_full or frames == 2)  # 2 frames: c is always 1
    assert model.sample_chunk(1) == (-1, -1)


@pytest.mark.parametrize("share", [0.5, 0.8, 0.0])
def test_full_context_share_of_dynamic_chunks(share):
    model = encoder(use_dynamic_chunk=True, full_context_prob=share).train()
    torch.manual_seed(0)
    draws = [model.sample_chunk(400)[0] for _ in range(4000)]
    full = sum(chunk == -1 for chunk in draws) / len(draws)
    assert abs(full - share) < 0.03
    assert {chunk for chunk in draws if chunk != -1} == set(range(1, 26))  # every chunk size still drawn


def test_dynamic_chunk_only_while_training_and_static_chunk_always():
    dynamic = encoder(use_dynamic_chunk=True)
    assert dynamic.resolve_chunk(0, -1, 100) == (-1, -1)  # eval: full context
    dynamic.train()
    torch.manual_seed(3)
    draws = {dynamic.resolve_chunk(0, -1, 100)[0] for _ in range(200)}
    assert -1 in draws and draws - {-1} and max(draws) <= 25
    assert dynamic.resolve_chunk(8, 2, 100) == (8, 2)  # an explicit chunk is never replaced
    static = encoder(static_chunk_size=6)
    assert static.resolve_chunk(0, 3, 100) == (6, 3)
    assert static.resolve_chunk(-1, -1, 100) == (-1, -1)


def test_static_chunk_forward_equals_explicit_chunk():
    model = encoder(static_chunk_size=4)
    feats = torch.randn(2, 80, F)
    lengths = torch.tensor([80, 61])
    torch.testing.assert_close(model(feats, lengths)[0], model(feats, lengths, 4)[0])


@pytest.mark.parametrize(
    "extra,message",
    [
        ({"static_chunk_size": -1}, r"static_chunk_size: must be >= 0 \(0: none\), got -1"),
        ({"static_chunk_size": 4, "use_dynamic_chunk": True}, "static_chunk_size: 4 conflicts with use_dynamic_chunk"),
        ({"use_dynamic_left_chunk": True}, "use_dynamic_left_chunk: needs use_dynamic_chunk: true"),
        ({"use_dynamic_chunk": True, "max_dynamic_chunk": 0}, "max_dynamic_chunk: must be >= 1, got 0"),
        ({"use_dynamic_chunk": True, "full_context_prob": 1.0}, r"full_context_prob: must be in \[0, 1\)"),
    ],
)
def test_chunk_options_are_checked(extra, message):
    with pytest.raises(ConfigError, match=message):
        encoder(**extra)
