"""The ``mamba`` encoder block: padding, bidirectional reading, streaming, encoder use."""
from __future__ import annotations

import pytest
import torch

from speechforge.errors import ConfigError
from speechforge.modules.conformer_encoder import ConformerEncoder
from speechforge.modules.mask import encoder_attention_mask
from speechforge_plugins.mamba.mamba_block import MambaBlock, reverse_valid_index

D_MODEL = 16
FFN = {"type": "dense", "hidden": 32}


def make_block(**kwargs) -> MambaBlock:
    torch.manual_seed(0)
    return MambaBlock(d_model=D_MODEL, ffn=FFN, dropout=0.0, chunk_size=4, **kwargs).eval()


def padded_batch(lengths: tuple[int, ...], fill: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """x (B, T, D) and pad_mask (B, 1, T); padding is random noise, or ``fill``."""
    torch.manual_seed(1)
    x = torch.randn(len(lengths), max(lengths), D_MODEL)
    pad = (torch.arange(max(lengths)) < torch.tensor(lengths)[:, None]).unsqueeze(1)
    noise = torch.randn_like(x) * 50 if fill is None else torch.full_like(x, fill)
    return torch.where(pad.transpose(1, 2), x, noise), pad


def test_reverse_valid_index_mirrors_valid_frames_only() -> None:
    pad = torch.tensor([[True, True, True, False, False], [True, False, True, True, False]])
    index = reverse_valid_index(pad)
    assert index.tolist() == [[2, 1, 0, 3, 4], [3, 1, 2, 0, 4]]
    assert torch.equal(index.gather(1, index), torch.arange(5).expand(2, 5))  # its own inverse


BLOCKS = {
    "causal": {},
    "causal_ffn": {"use_ffn": True},
    "bi_sum": {"bidirectional": True},
    "bi_concat_ffn": {"bidirectional": True, "merge": "concat", "use_ffn": True},
}


@pytest.mark.parametrize("name", list(BLOCKS))
def test_valid_outputs_ignore_padding_content(name: str) -> None:
    block = make_block(**BLOCKS[name])
    lengths = (11, 7, 3)
    x_zero, pad = padded_batch(lengths, fill=0.0)
    x_noise, _ = padded_batch(lengths)
    out_zero, _ = block(x_zero, pad, pad)
    out_noise, _ = block(x_noise, pad, pad)
    valid = pad.transpose(1, 2)  # (B, T, 1)
    torch.testing.assert_close(out_noise * valid, out_zero * valid, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", list(BLOCKS))
def test_padded_batch_equals_utterances_alone(name: str) -> None:
    block = make_block(**BLOCKS[name])
    lengths = (11, 7, 3)
    x, pad = padded_batch(lengths)
    out, _ = block(x, pad, pad)
    for b, n in enumerate(lengths):
        alone, _ = block(x[b : b + 1, :n], None, None)
        torch.testing.assert_close(out[b : b + 1, :n], alone, atol=1e-5, rtol=0)


def test_bidirectional_reads_the_future() -> None:
    x = torch.randn(1, 9, D_MODEL)
    changed = x.clone()
    changed[:, -1] += torch.randn(D_MODEL)  # not a constant shift, which LayerNorm removes
    for bidirectional in (False, True):
        block = make_block(bidirectional=bidirectional)
        first_frame_moves = not torch.allclose(block(x, None, None)[0][:, 0], block(changed, None, None)[0][:, 0])
        assert first_frame_moves is bidirectional


@pytest.mark.parametrize("pieces", [(1,) * 9, (4, 5), (2, 3, 4)])
def test_streaming_equals_whole_utterance(pieces: tuple[int, ...]) -> None:
    block = make_block(use_ffn=True)
    x = torch.randn(2, sum(pieces), D_MODEL)
    full, _ = block(x, None, None)
    cache, outs, start = {}, [], 0
    for n in pieces:
        out, cache = block(x[:, start : start + n], None, None, cache=cache)
        outs.append(out)
        start += n
    torch.testing.assert_close(torch.cat(outs, dim=1), full, atol=1e-5, rtol=0)
    assert cache["conv"].shape == (2, 2 * D_MODEL, 3) and cache["ssm"].shape == (2, 2 * D_MODEL, 16)


def test_state_dict_keys() -> None:
    assert list(make_block(bidirectional=True, merge="concat", use_ffn=True).state_dict()) == [
        "norm_mamba.weight", "norm_mamba.bias",
        *(f"{m}.{p}" for m in ("mamba", "mamba_backward") for p in (
            "A_log", "D", "in_proj.weight", "conv1d.weight", "conv1d.bias", "x_proj.weight",
            "dt_proj.weight", "dt_proj.bias", "out_proj.weight")),
        "merge_proj.weight", "merge_proj.bias", "norm_ff.weight", "norm_ff.bias",
        "feed_forward.w_1.weight", "feed_forward.w_1.bias", "feed_forward.w_2.weight", "feed_forward.w_2.bias",
    ]  # fmt: skip
    assert list(make_block().state_dict())[-1] == "mamba.out_proj.weight"  # no FFN by default


def test_bidirectional_refuses_causal_streaming_and_chunk_masks() -> None:
    with pytest.raises(ConfigError, match="bidirectional: a causal encoder"):
        make_block(bidirectional=True, causal=True)
    block = make_block(bidirectional=True)
    x, pad = padded_batch((6, 4))
    with pytest.raises(ValueError, match="cannot stream"):
        block(x, pad, pad, cache={})
    with pytest.raises(ValueError, match=r"chunk mask of shape \(2, 6, 6\)"):
        block(x, encoder_attention_mask(pad, 2), pad)


def test_unknown_merge_is_rejected() -> None:
    with pytest.raises(ConfigError, match="merge: must be one of sum, concat, got 'mean'"):
        make_block(bidirectional=True, merge="mean")


@pytest.mark.parametrize("block", [{"type": "mamba"}, {"type": "mamba", "bidirectional": True, "use_ffn": True}])
def test_conformer_encoder_of_mamba_blocks_trains(block: dict) -> None:
    torch.manual_seed(0)
    encoder = ConformerEncoder(
        input_dim=20, d_model=D_MODEL, heads=2, num_blocks=2, encoder_block=block, pos_enc="none", ffn=FFN
    )
    assert all(isinstance(b, MambaBlock) for b in encoder.blocks)
    feats, lengths = torch.randn(3, 60, 20), torch.tensor([60, 41, 17])
    out, out_lens = encoder(feats, lengths)
    assert out.shape == (3, out_lens.max(), D_MODEL)
    out.square().mean().backward()
    grads = [p.grad for p in encoder.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert encoder.blocks[0].mamba.A_log.grad.abs().sum() > 0


def test_causal_mamba_encoder_accepts_chunked_training() -> None:
    encoder = ConformerEncoder(
        input_dim=20, d_model=D_MODEL, heads=2, num_blocks=1, encoder_block={"type": "mamba"}, pos_enc="none",
        ffn=FFN, causal=True,
    ).eval()
    feats, lengths = torch.randn(2, 40, 20), torch.tensor([40, 30])
    full, _ = encoder(feats, lengths)
    chunked, _ = encoder(feats, lengths, chunk_size=2)
    torch.testing.assert_close(chunked, full)  # a causal scan never looks ahead anyway


def test_causal_mamba_encoder_streams_chunk_by_chunk() -> None:
    """The encoder's streaming starts mamba blocks from {} and carries their conv/ssm state."""
    torch.manual_seed(0)
    encoder = ConformerEncoder(
        input_dim=20, d_model=D_MODEL, heads=2, num_blocks=2, encoder_block={"type": "mamba", "use_ffn": True},
        pos_enc="none", ffn=FFN, causal=True,
    ).eval()
    feats, lengths = torch.randn(3, 120, 20), torch.tensor([120, 90, 47])
    full, full_lens = encoder(feats, lengths, chunk_size=4)
    streamed, streamed_lens = encoder.forward_chunk_by_chunk(feats, lengths, chunk_size=4)
    assert torch.equal(streamed_lens, full_lens)
    valid = (torch.arange(full.size(1)) < full_lens[:, None]).unsqueeze(-1)
    torch.testing.assert_close(streamed * valid, full * valid, atol=1e-5, rtol=0)
