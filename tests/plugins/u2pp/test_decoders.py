"""The ``transformer`` and ``bitransformer`` decoders: shapes, forward+backward, step-wise
decoding with the K/V cache equal to teacher forcing, shared memory for hypothesis groups,
padding never leaking, pinned parameter names, MoE and flash components dropping in, errors."""
from __future__ import annotations

import pytest
import torch

from speechforge.errors import ConfigError
from speechforge.modules.mask import padding_mask
from speechforge.registry import build_component
from speechforge_plugins.u2pp.attention_decoder import AttentionDecoder

V, D = 13, 16


def decoder(kind: str = "bitransformer", **extra) -> AttentionDecoder:
    config = {"type": kind, "heads": 2, "num_blocks": 2, "ffn": {"type": "dense", "hidden": 24}, **extra}
    if kind == "bitransformer":
        config.setdefault("r_num_blocks", 1)
    return build_component("decoder", config, "decoder", vocab_size=V, encoder_dim=D)


def memory(batch: int = 2, frames: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    lens = torch.tensor([frames] + [frames - 3] * (batch - 1))
    return torch.randn(batch, frames, D), padding_mask(lens, frames).unsqueeze(1)


@pytest.mark.parametrize("kind", ["transformer", "bitransformer"])
def test_forward_backward_shapes(kind):
    model = decoder(kind).train()
    mem, mask = memory()
    mem.requires_grad_(True)
    ys = torch.randint(0, V, (2, 5))
    r_ys = torch.randint(0, V, (2, 5)) if kind == "bitransformer" else None
    logits, r_logits = model(mem, mask, ys, torch.tensor([5, 3]), r_ys)
    assert logits.shape == (2, 5, V)
    assert (r_logits is None) == (kind == "transformer")
    loss = logits.square().sum() + (0 if r_logits is None else r_logits.square().sum())
    loss.backward()
    assert mem.grad is not None and mem.grad[1, 6:].abs().sum() == 0  # padded frames get nothing
    assert all(p.grad is not None for p in model.parameters())


def test_bidirectional_branches_and_block_counts():
    model = decoder("bitransformer", num_blocks=3, r_num_blocks=2)
    assert model.bidirectional and not decoder("transformer").bidirectional
    assert len(model.left_decoder.decoders) == 3 and len(model.right_decoder.decoders) == 2


def test_state_dict_keys_are_pinned():
    names = sorted({k.rsplit(".", 1)[0] for k in decoder("bitransformer").state_dict()})
    block = [
        "feed_forward.w_1", "feed_forward.w_2", "norm1", "norm2", "norm3",
        "self_attn.linear_out", "self_attn.linear_qkv", "src_attn.linear_out", "src_attn.linear_qkv",
    ]  # fmt: skip
    expected = []
    for side, blocks in (("left_decoder", 2), ("right_decoder", 1)):
        expected += [f"{side}.after_norm", f"{side}.embed", f"{side}.output_layer"]
        expected += [f"{side}.decoders.{i}.{name}" for i in range(blocks) for name in block]
    assert names == sorted(expected)


@pytest.mark.parametrize("kind", ["transformer", "bitransformer"])
def test_step_with_cache_equals_teacher_forcing(kind):
    model = decoder(kind).eval()
    mem, mask = memory()
    ys = torch.randint(0, V, (2, 6))
    logits, _ = model(mem, mask, ys, torch.tensor([6, 6]))
    expected = torch.log_softmax(logits, dim=-1)
    state = None
    for t in range(6):
        log_probs, state = model.step(mem, mask, ys[:, t], state)
        torch.testing.assert_close(log_probs, expected[:, t], atol=1e-5, rtol=1e-5)
    assert state.length == 6 and state.caches[0].shape == (2, 2, 6, D)


def test_hypothesis_groups_share_memory():
    model = decoder("transformer").eval()
    mem, mask = memory(batch=2)
    ys = torch.randint(0, V, (6, 4))  # three hypotheses per utterance
    lens = torch.tensor([4, 2, 3, 4, 1, 4])
    grouped, _ = model(mem, mask, ys, lens)
    repeated, _ = model(mem.repeat_interleave(3, 0), mask.repeat_interleave(3, 0), ys, lens)
    torch.testing.assert_close(grouped, repeated, atol=1e-5, rtol=1e-5)


def test_padding_tokens_never_change_valid_positions():
    model = decoder("transformer").eval()
    mem, mask = memory(batch=1)
    ys = torch.randint(0, V, (1, 7))
    short, _ = model(mem, mask, ys[:, :4], torch.tensor([4]))
    padded, _ = model(mem, mask, ys, torch.tensor([4]))
    torch.testing.assert_close(padded[:, :4], short, atol=1e-5, rtol=1e-5)


def test_moe_ffn_and_flash_attention_drop_in():
    model = decoder(
        "bitransformer",
        ffn={"type": "moe", "num_experts": 4, "top_k": 2, "hidden": 24},
        self_attention={"type": "flash"},
        src_attention={"type": "mha", "use_sdpa": False},
    ).eval()
    block = model.left_decoder.decoders[0]
    assert type(block.feed_forward).__name__ == "MoEFeedForward"
    assert type(block.self_attn).__name__ == "FlashAttention"
    assert not block.src_attn.use_sdpa
    mem, mask = memory()
    logits, r_logits = model(mem, mask, torch.randint(0, V, (2, 3)), torch.tensor([3, 2]), torch.randint(0, V, (2, 3)))
    assert logits.shape == r_logits.shape == (2, 3, V)


def test_one_attention_mapping_sets_both_roles():
    block = decoder("transformer", attention={"type": "mha", "use_sdpa": False}).decoders[0]
    assert not block.self_attn.use_sdpa and not block.src_attn.use_sdpa


def test_relative_position_attention_is_refused():
    with pytest.raises(ConfigError, match=r"decoder\.self_attention: RelPositionMultiHeadAttention needs relative positions"):
        decoder("transformer", self_attention={"type": "rel_mha"})


def test_transformer_has_no_right_to_left_branch():
    mem, mask = memory()
    with pytest.raises(ValueError, match="no right-to-left branch"):
        decoder("transformer")(mem, mask, torch.zeros(2, 3, dtype=torch.long), torch.tensor([3, 3]), torch.zeros(2, 3, dtype=torch.long))


def test_unknown_key_names_its_path():
    with pytest.raises(ConfigError, match=r"decoder\.r_num_block: unknown key .* did you mean r_num_blocks"):
        decoder("bitransformer", r_num_block=2)
