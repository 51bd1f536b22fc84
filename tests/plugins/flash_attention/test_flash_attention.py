"""``flash`` (relative: false) against core's reference ``mha`` (materialised scores)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from speechforge.modules.mask import encoder_attention_mask, padding_mask
from speechforge.modules.multi_head_attention import MultiHeadAttention
from speechforge_plugins.flash_attention import kernels
from speechforge_plugins.flash_attention.flash_attention import FlashAttention

D_MODEL, HEADS = 32, 4
LENGTHS = (29, 17, 4)


def make_pair(query_block: int = 8, dropout: float = 0.0) -> tuple[MultiHeadAttention, FlashAttention]:
    torch.manual_seed(0)
    reference = MultiHeadAttention(d_model=D_MODEL, heads=HEADS, dropout=dropout, use_sdpa=False)
    flash = FlashAttention(d_model=D_MODEL, heads=HEADS, dropout=dropout, query_block=query_block)
    flash.load_state_dict(reference.state_dict())
    return reference, flash


def make_mask(kind: str, lengths: tuple[int, ...] = LENGTHS) -> torch.Tensor | None:
    pad = padding_mask(torch.tensor(lengths), max(lengths)).unsqueeze(1)  # (B, 1, T)
    return {
        "none": None,
        "key_padding": pad,
        "causal": encoder_attention_mask(pad, 1, -1),
        "chunk": encoder_attention_mask(pad, 4, -1),
        "chunk_left": encoder_attention_mask(pad, 4, 1),
    }[kind]


def run_both(reference, flash, x, mask, **kwargs):
    """Outputs and input/parameter gradients of both modules on the same input."""
    results = []
    for module in (reference, flash):
        module.zero_grad()
        inp = x.clone().requires_grad_()
        out, cache = module(inp, inp, inp, mask, **kwargs)
        (out * torch.linspace(-1, 1, out.size(-1))).square().sum().backward()
        grads = {n: p.grad.clone() for n, p in module.named_parameters()}
        results.append((out, cache, inp.grad, grads))
    return results


@pytest.mark.parametrize("query_block", [8, 256])
@pytest.mark.parametrize("kind", ["none", "key_padding", "causal", "chunk", "chunk_left"])
def test_outputs_and_gradients_match_reference(kind: str, query_block: int) -> None:
    reference, flash = make_pair(query_block)
    x = torch.randn(len(LENGTHS), max(LENGTHS), D_MODEL)
    (ref_out, _, ref_dx, ref_grads), (out, _, dx, grads) = run_both(reference, flash, x, make_mask(kind))
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=0)
    torch.testing.assert_close(dx, ref_dx, atol=1e-5, rtol=0)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(grads[name], grad, atol=1e-5, rtol=0, msg=name)


@pytest.mark.parametrize("kind", ["key_padding", "chunk"])
def test_cache_matches_reference(kind: str) -> None:
    reference, flash = make_pair()
    batch, cached, length = 2, 6, 5
    x = torch.randn(batch, length, D_MODEL)
    cache = torch.randn(batch, HEADS, cached, 2 * D_MODEL // HEADS)
    mask = torch.ones(batch, 1, cached + length, dtype=torch.bool)
    mask[1, 0, :2] = False
    if kind == "chunk":
        mask = mask & torch.rand(batch, length, cached + length).gt(0.3)
    (ref_out, ref_cache, ref_dx, _), (out, new_cache, dx, _) = run_both(reference, flash, x, mask, cache=cache)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=0)
    torch.testing.assert_close(dx, ref_dx, atol=1e-5, rtol=0)
    assert new_cache.shape == (batch, HEADS, cached + length, 2 * D_MODEL // HEADS)
    torch.testing.assert_close(new_cache, ref_cache, atol=1e-6, rtol=0)


def test_streaming_by_chunks_equals_full_chunk_mask() -> None:
    _, flash = make_pair()
    flash.eval()
    chunk, length = 4, 12
    x = torch.randn(1, length, D_MODEL)
    full, _ = flash(x, x, x, make_mask("chunk", (length,)))
    cache = torch.zeros(1, HEADS, 0, 2 * D_MODEL // HEADS)
    outs = []
    for start in range(0, length, chunk):
        piece = x[:, start : start + chunk]
        out, cache = flash(piece, piece, piece, None, cache=cache)
        outs.append(out)
    torch.testing.assert_close(torch.cat(outs, dim=1), full, atol=1e-5, rtol=0)


def test_cross_attention_matches_reference() -> None:
    reference, flash = make_pair()
    query, memory = torch.randn(3, 7, D_MODEL), torch.randn(3, 11, D_MODEL)
    mask = padding_mask(torch.tensor([11, 6, 1]), 11).unsqueeze(1)
    expected, _ = reference(query, memory, memory, mask)
    actual, _ = flash(query, memory, memory, mask)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["key_padding", "chunk"])
def test_rows_without_keys_are_zero_never_nan(kind: str) -> None:
    reference, flash = make_pair()
    lengths = (6, 0) if kind == "key_padding" else (6, 6)
    mask = make_mask(kind, lengths)
    if kind == "chunk":
        mask = mask.clone()
        mask[0, 2] = False  # one query row sees nothing
        mask[1] = False  # a whole utterance sees nothing
    x = torch.randn(2, 6, D_MODEL)
    (ref_out, _, ref_dx, _), (out, _, dx, grads) = run_both(reference, flash, x, mask)
    empty = ~mask.any(dim=-1)  # (B, 1 | T)
    for result in (ref_out, out):
        assert torch.equal(result.masked_select(empty.unsqueeze(-1)), torch.zeros(int(empty.expand(2, 6).sum()) * D_MODEL))
    assert torch.isfinite(dx).all() and all(torch.isfinite(g).all() for g in grads.values())
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=0)
    torch.testing.assert_close(dx, ref_dx, atol=1e-5, rtol=0)


def test_state_dict_keys_match_mha_both_ways() -> None:
    reference, flash = make_pair()
    assert list(flash.state_dict()) == [
        "linear_qkv.weight", "linear_qkv.bias", "linear_out.weight", "linear_out.bias",
    ]
    reference.load_state_dict(flash.state_dict())  # strict: same keys, same shapes


def test_dropout_acts_in_training_only() -> None:
    _, flash = make_pair(dropout=0.5)
    x = torch.randn(2, 9, D_MODEL)
    mask = make_mask("key_padding", (9, 5))
    flash.eval()
    eval_out, _ = flash(x, x, x, mask)
    flash.train()
    train_out, _ = flash(x, x, x, mask)
    assert torch.isfinite(train_out).all()
    assert not torch.allclose(train_out, eval_out)
    flash.eval()
    torch.testing.assert_close(flash(x, x, x, mask)[0], eval_out)


def record_sdpa_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[int, ...], tuple[int, ...] | None]]:
    """Patch the SDPA the kernels call; record (query shape, mask shape) of each call."""
    calls = []
    sdpa = F.scaled_dot_product_attention

    def recording_sdpa(q, k, v, attn_mask=None, **kwargs):
        calls.append((tuple(q.shape), None if attn_mask is None else tuple(attn_mask.shape)))
        return sdpa(q, k, v, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(kernels.F, "scaled_dot_product_attention", recording_sdpa)
    return calls


def test_key_padding_is_one_call_with_a_broadcast_boolean_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    _, flash = make_pair(query_block=4)
    calls = record_sdpa_calls(monkeypatch)
    x = torch.randn(3, 29, D_MODEL)
    flash(x, x, x, make_mask("key_padding"))
    assert calls == [((3, HEADS, 29, D_MODEL // HEADS), (3, 1, 1, 29))]


def test_chunk_mask_runs_in_query_blocks_over_visible_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    _, flash = make_pair(query_block=4)
    calls = record_sdpa_calls(monkeypatch)
    x = torch.randn(3, 29, D_MODEL)
    flash(x, x, x, make_mask("chunk_left"))  # chunks of 4, one left chunk: at most 8 keys
    assert len(calls) == 8
    assert all(q_shape[2] <= 4 and mask_shape[-1] <= 8 for q_shape, mask_shape in calls)


def test_mask_not_covering_the_keys_is_rejected() -> None:
    _, flash = make_pair()
    x = torch.randn(1, 5, D_MODEL)
    cache = torch.zeros(1, HEADS, 3, 2 * D_MODEL // HEADS)
    with pytest.raises(ValueError, match=r"mask of shape \(1, 1, 5\) does not fit 5 queries and 8 keys"):
        flash(x, x, x, torch.ones(1, 1, 5, dtype=torch.bool), cache=cache)
