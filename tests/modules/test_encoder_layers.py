"""``Encoder.forward_layers``: the outputs of chosen blocks equal a manual run of the stack,
negative indices count from the end, and an index past the stack is refused."""
from __future__ import annotations

import pytest
import torch

from speechforge.errors import ConfigError
from speechforge.modules.mask import encoder_attention_mask, padding_mask
from speechforge.registry import build_component

F = 20


def encoder(kind: str):
    config = {"type": kind, "d_model": 16, "heads": 2, "num_blocks": 3, "ffn": {"type": "dense", "hidden": 24}}
    return build_component("encoder", config, "encoder", input_dim=F).eval()


def manual_block_outputs(model, feats, lengths, chunk_size=-1):
    """Each block's output, running subsampling, positions and blocks by hand."""
    x, lens = model.embed(feats, lengths)  # (B, T', D)
    pos_emb = None
    if model.pos_enc is not None:
        x, pos_emb = model.pos_enc(x)
    mask = padding_mask(lens, x.size(1)).unsqueeze(1)  # (B, 1, T')
    att_mask = encoder_attention_mask(mask, chunk_size, -1) if chunk_size > 0 else mask  # (B, T', T')
    outputs = []
    for block in model.blocks:
        x, _ = block(x, att_mask, mask, pos_emb)
        outputs.append(x)
    return outputs


@pytest.mark.parametrize("kind", ["conformer", "transformer"])
def test_layer_outputs_equal_a_manual_run_of_the_blocks(kind):
    model = encoder(kind)
    feats, lengths = torch.randn(2, 60, F), torch.tensor([60, 41])
    out, lens, layers = model.forward_layers(feats, lengths, [1, -1, 0])
    manual = manual_block_outputs(model, feats, lengths)
    assert model.num_layers == 3
    for got, want in zip(layers, [manual[1], manual[2], manual[0]]):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(out, model.after_norm(manual[-1]))
    plain_out, plain_lens = model(feats, lengths)
    torch.testing.assert_close(plain_out, out)
    assert torch.equal(plain_lens, lens)


@pytest.mark.parametrize("kind", ["conformer", "transformer"])
def test_layer_outputs_follow_the_chunk_mask(kind):
    model = encoder(kind)
    feats, lengths = torch.randn(2, 60, F), torch.tensor([60, 45])
    _, _, chunked = model.forward_layers(feats, lengths, [0, 2], chunk_size=2)
    manual = manual_block_outputs(model, feats, lengths, chunk_size=2)
    torch.testing.assert_close(chunked[0], manual[0])
    torch.testing.assert_close(chunked[1], manual[2])
    assert not torch.allclose(chunked[1], manual_block_outputs(model, feats, lengths)[2])


@pytest.mark.parametrize("layer", [3, -4, 10])
def test_an_index_past_the_stack_is_refused(layer):
    with pytest.raises(ConfigError, match=rf"encoder layer {layer}: out of range for 3 blocks \(valid: -3 ... 2\)"):
        encoder("transformer").forward_layers(torch.randn(1, 30, F), torch.tensor([30]), [0, layer])
