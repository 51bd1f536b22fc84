"""``flash`` with ``relative: true`` against core's reference ``rel_mha``."""
from __future__ import annotations

import pytest
import torch

from speechforge.modules.conformer_encoder import ConformerEncoder
from speechforge.modules.mask import encoder_attention_mask, padding_mask
from speechforge.modules.rel_multi_head_attention import RelPositionMultiHeadAttention
from speechforge.modules.rel_positional_encoding import RelPositionalEncoding
from speechforge_plugins.flash_attention.rel_position_flash_attention import RelPositionFlashAttention

D_MODEL, HEADS = 32, 4
LENGTHS = (29, 17, 4)


def make_pair(query_block: int = 8) -> tuple[RelPositionMultiHeadAttention, RelPositionFlashAttention]:
    torch.manual_seed(0)
    reference = RelPositionMultiHeadAttention(d_model=D_MODEL, heads=HEADS, use_sdpa=False)
    flash = RelPositionFlashAttention(d_model=D_MODEL, heads=HEADS, query_block=query_block)
    flash.load_state_dict(reference.state_dict())
    return reference, flash


def make_mask(kind: str) -> torch.Tensor | None:
    pad = padding_mask(torch.tensor(LENGTHS), max(LENGTHS)).unsqueeze(1)  # (B, 1, T)
    return {
        "none": None,
        "key_padding": pad,
        "causal": encoder_attention_mask(pad, 1, -1),
        "chunk": encoder_attention_mask(pad, 4, -1),
        "chunk_left": encoder_attention_mask(pad, 4, 1),
    }[kind]


def run_both(reference, flash, x, mask, pos_emb, cache=None):
    results = []
    for module in (reference, flash):
        module.zero_grad()
        inp = x.clone().requires_grad_()
        out, new_cache = module(inp, inp, inp, mask, pos_emb, cache)
        (out * torch.linspace(-1, 1, out.size(-1))).square().sum().backward()
        grads = {n: p.grad.clone() for n, p in module.named_parameters()}
        results.append((out, new_cache, inp.grad, grads))
    return results


@pytest.mark.parametrize("query_block", [5, 256])
@pytest.mark.parametrize("kind", ["none", "key_padding", "causal", "chunk", "chunk_left"])
def test_outputs_and_gradients_match_rel_mha(kind: str, query_block: int) -> None:
    reference, flash = make_pair(query_block)
    x = torch.randn(len(LENGTHS), max(LENGTHS), D_MODEL)
    _, pos_emb = RelPositionalEncoding(D_MODEL, 0.0)(x)
    (ref_out, _, ref_dx, ref_grads), (out, _, dx, grads) = run_both(reference, flash, x, make_mask(kind), pos_emb)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=0)
    torch.testing.assert_close(dx, ref_dx, atol=1e-5, rtol=0)
    assert grads.keys() == ref_grads.keys()
    for name, grad in ref_grads.items():
        torch.testing.assert_close(grads[name], grad, atol=1e-5, rtol=0, msg=name)


def test_cache_matches_rel_mha() -> None:
    reference, flash = make_pair(query_block=2)
    batch, cached, length = 2, 6, 5
    x = torch.randn(batch, length, D_MODEL)
    _, pos_emb = RelPositionalEncoding(D_MODEL, 0.0)(x, offset=cached)
    cache = torch.randn(batch, HEADS, cached, 2 * D_MODEL // HEADS)
    mask = torch.rand(batch, length, cached + length).gt(0.3)
    (ref_out, ref_cache, ref_dx, _), (out, new_cache, dx, _) = run_both(reference, flash, x, mask, pos_emb, cache)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=0)
    torch.testing.assert_close(dx, ref_dx, atol=1e-5, rtol=0)
    torch.testing.assert_close(new_cache, ref_cache, atol=1e-6, rtol=0)


def test_rows_without_keys_are_zero_never_nan() -> None:
    reference, flash = make_pair()
    x = torch.randn(2, 6, D_MODEL)
    _, pos_emb = RelPositionalEncoding(D_MODEL, 0.0)(x)
    mask = torch.ones(2, 6, 6, dtype=torch.bool)
    mask[0, 3] = False
    mask[1] = False
    (ref_out, _, _, _), (out, _, dx, grads) = run_both(reference, flash, x, mask, pos_emb)
    assert torch.equal(out[0, 3], torch.zeros(D_MODEL)) and torch.equal(out[1], torch.zeros(6, D_MODEL))
    assert torch.equal(ref_out[0, 3], torch.zeros(D_MODEL)) and torch.equal(ref_out[1], torch.zeros(6, D_MODEL))
    assert torch.isfinite(dx).all() and all(torch.isfinite(g).all() for g in grads.values())
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=0)


def test_state_dict_is_rel_mha_state_dict() -> None:
    reference, flash = make_pair()
    assert list(flash.state_dict()) == list(reference.state_dict())
    assert {"linear_pos.weight", "pos_bias_u", "pos_bias_v"} <= set(flash.state_dict())
    reference.load_state_dict(flash.state_dict())


def test_uses_relative_position() -> None:
    assert RelPositionFlashAttention.uses_relative_position


def test_needs_pos_emb_of_the_right_length() -> None:
    _, flash = make_pair()
    x = torch.randn(1, 5, D_MODEL)
    with pytest.raises(ValueError, match="needs pos_emb"):
        flash(x, x, x, None)
    with pytest.raises(ValueError, match="pos_emb covers 7 distances, expected Tq \\+ Tk - 1 = 9"):
        flash(x, x, x, None, torch.randn(1, 7, D_MODEL))


@pytest.mark.parametrize("chunk_size", [0, 4])
def test_conformer_encoder_with_flash_equals_rel_mha(chunk_size: int) -> None:
    def encoder(attention: dict) -> ConformerEncoder:
        return ConformerEncoder(
            input_dim=20, d_model=D_MODEL, heads=HEADS, num_blocks=2, attention=attention,
            ffn={"type": "dense", "hidden": 64},
        )

    torch.manual_seed(0)
    reference = encoder({"type": "rel_mha", "use_sdpa": False}).eval()
    flash = encoder({"type": "flash", "relative": True}).eval()
    assert all(type(b.self_attn) is RelPositionFlashAttention for b in flash.blocks)
    flash.load_state_dict(reference.state_dict())
    feats, lengths = torch.randn(3, 64, 20), torch.tensor([64, 50, 23])
    expected, expected_lens = reference(feats, lengths, chunk_size=chunk_size)
    actual, actual_lens = flash(feats, lengths, chunk_size=chunk_size)
    assert torch.equal(actual_lens, expected_lens)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


def test_causal_conformer_with_flash_streams_chunk_by_chunk() -> None:
    """The encoder's streaming path (K/V cache, pos_emb over cache + chunk) through flash."""
    torch.manual_seed(0)
    encoder = ConformerEncoder(
        input_dim=20, d_model=D_MODEL, heads=HEADS, num_blocks=2, attention={"type": "flash", "relative": True},
        ffn={"type": "dense", "hidden": 64}, causal=True,
    ).eval()
    feats, lengths = torch.randn(2, 100, 20), torch.tensor([100, 61])
    full, full_lens = encoder(feats, lengths, chunk_size=4, num_left_chunks=2)
    streamed, _ = encoder.forward_chunk_by_chunk(feats, lengths, chunk_size=4, num_left_chunks=2)
    valid = (torch.arange(full.size(1)) < full_lens[:, None]).unsqueeze(-1)
    torch.testing.assert_close(streamed * valid, full * valid, atol=1e-5, rtol=0)
