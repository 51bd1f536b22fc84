"""The ``moe`` FFN: exact equivalences (dense FFN, identical experts, a naive per-expert loop),
gradients reaching only the chosen experts, capacity dropping, counting, config errors, and a
MoE Conformer training step."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from speechforge.errors import ConfigError
from speechforge.modules.feed_forward import PositionwiseFeedForward
from speechforge.modules.fused_linear import plain_kernels
from speechforge.modules.inference_transform import optimize_for_cpu_inference
from speechforge.registry import build_component
from speechforge_plugins.moe.moe_feed_forward import MoEFeedForward

D, H = 16, 24
DISPATCHES = ["grouped", "padded", "auto"]


def moe(**kwargs) -> MoEFeedForward:
    return build_component("ffn", {"type": "moe", "hidden": H, "dropout": 0.0, **kwargs}, "ffn", d_model=D)


def naive(layer: MoEFeedForward, x: torch.Tensor) -> torch.Tensor:
    """WeNet's loop: for each expert, the frames routed to it, run, add with their weight."""
    flat = x.reshape(-1, D)
    top, chosen = layer.gate(flat).topk(layer.top_k, dim=-1)
    weights = torch.softmax(top.float(), dim=-1)
    out = torch.zeros_like(flat)
    for e in range(layer.num_experts):
        frames, slot = torch.where(chosen == e)
        if frames.numel() == 0:
            continue
        xe = flat[frames]
        h = layer.activation(xe @ layer.w_1[e].t() + (0 if layer.b_1 is None else layer.b_1[e]))
        if layer.w_gate is not None:
            h = h * (xe @ layer.w_gate[e].t() + (0 if layer.b_gate is None else layer.b_gate[e]))
        y = h @ layer.w_2[e].t() + (0 if layer.b_2 is None else layer.b_2[e])
        out = out.index_add(0, frames, weights[frames, slot, None] * y)
    return out.view_as(x)


def copy_dense_into_expert(dense: PositionwiseFeedForward, layer: MoEFeedForward, e: int) -> None:
    with torch.no_grad():
        layer.w_1[e].copy_(dense.w_1.weight)
        layer.b_1[e].copy_(dense.w_1.bias)
        layer.w_2[e].copy_(dense.w_2.weight)
        layer.b_2[e].copy_(dense.w_2.bias)
        if dense.w_gate is not None:
            layer.w_gate[e].copy_(dense.w_gate.weight)
            layer.b_gate[e].copy_(dense.w_gate.bias)


@pytest.mark.parametrize("dispatch", DISPATCHES)
@pytest.mark.parametrize("activation,gated", [("relu", False), ("swish", False), ("gelu", False), ("swish", True)])
def test_one_expert_top1_is_the_dense_ffn(dispatch, activation, gated):
    dense = PositionwiseFeedForward(d_model=D, hidden=H, activation=activation, gated=gated, dropout=0.0)
    layer = moe(num_experts=1, top_k=1, activation=activation, gated=gated, dispatch=dispatch)
    copy_dense_into_expert(dense, layer, 0)
    x = torch.randn(3, 7, D)
    torch.testing.assert_close(layer(x), dense(x), atol=1e-6, rtol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), dense(x), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("dispatch", DISPATCHES)
@pytest.mark.parametrize("top_k", [1, 2, 4])
def test_identical_experts_equal_the_dense_ffn_for_any_k(dispatch, top_k):
    dense = PositionwiseFeedForward(d_model=D, hidden=H, dropout=0.0)
    layer = moe(num_experts=4, top_k=top_k, dispatch=dispatch)
    for e in range(4):
        copy_dense_into_expert(dense, layer, e)
    x = torch.randn(2, 9, D)
    torch.testing.assert_close(layer(x), dense(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dispatch", DISPATCHES)
@pytest.mark.parametrize("top_k", [1, 2, 3])
@pytest.mark.parametrize("gated,bias", [(False, True), (True, True), (False, False)])
def test_dispatch_equals_the_naive_expert_loop(dispatch, top_k, gated, bias):
    layer = moe(num_experts=5, top_k=top_k, gated=gated, bias=bias, dispatch=dispatch)
    x = torch.randn(4, 13, D)
    with torch.no_grad():  # the inference path (outputs written in place)
        torch.testing.assert_close(layer(x), naive(layer, x), atol=1e-5, rtol=1e-5)
    out = layer(x)  # the autograd path
    torch.testing.assert_close(out, naive(layer, x), atol=1e-5, rtol=1e-5)
    grad_out = torch.randn_like(out)
    ours = torch.autograd.grad(out, list(layer.parameters()), grad_out, allow_unused=True)
    reference = torch.autograd.grad(naive(layer, x), list(layer.parameters()), grad_out, allow_unused=True)
    for (name, _), a, b in zip(layer.named_parameters(), ours, reference):
        if b is None:  # top-1: the router's softmax weight is constantly 1
            assert a is None or not a.any(), name
        else:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("dispatch", DISPATCHES)
def test_gradients_reach_only_the_selected_experts(dispatch):
    layer = moe(num_experts=4, top_k=2, dispatch=dispatch)
    with torch.no_grad():
        layer.gate.weight[3] = -10.0  # positive inputs never pick expert 3
    x = torch.rand(2, 11, D) + 0.1
    layer(x).square().sum().backward()
    for p in (layer.w_1, layer.b_1, layer.w_2, layer.b_2):
        assert not p.grad[3].any()
        assert all(p.grad[e].any() for e in range(3))
    assert layer.gate.weight.grad.any()


def test_top1_keeps_the_router_in_the_graph():
    """A zero gradient, not None: DDP needs every parameter in the graph."""
    layer = moe(num_experts=3, top_k=1)
    layer(torch.randn(2, 5, D)).sum().backward()
    assert layer.gate.weight.grad is not None and not layer.gate.weight.grad.any()


def routed_to_expert_0(layer: MoEFeedForward) -> None:
    """Every positive frame scores expert 0 highest, expert 1 second, and so on."""
    with torch.no_grad():
        for e in range(layer.num_experts):
            layer.gate.weight[e] = 1.0 - e


@pytest.mark.parametrize("dispatch", DISPATCHES)
def test_capacity_drops_late_frames_to_zero(dispatch):
    layer = moe(num_experts=4, top_k=1, capacity_factor=1.0, dispatch=dispatch)
    routed_to_expert_0(layer)
    x = torch.rand(2, 6, D) + 0.1  # 12 frames, capacity ceil(1.0 * 12 / 4) = 3
    out = layer(x).view(12, D)
    expected = naive(layer, x).view(12, D)
    torch.testing.assert_close(out[:3], expected[:3])  # the first three frames in order are served
    assert not out[3:].any()  # the rest pass through the residual


def test_capacity_serves_first_choices_before_second_choices():
    layer = moe(num_experts=2, top_k=2, capacity_factor=0.75)
    routed_to_expert_0(layer)
    x = torch.rand(1, 4, D) + 0.1  # 8 assignments, capacity ceil(0.75 * 8 / 2) = 3 per expert
    out = layer(x).view(4, D)
    flat = x.view(4, D)
    weights = torch.softmax(layer.gate(flat), dim=-1)  # (4, 2): column e is expert e
    expert = [layer.expert(flat, e) for e in range(2)]
    # expert 0 is everyone's first choice: frames 0-2; expert 1 everyone's second: frames 0-2
    expected = weights[:, :1] * expert[0] + weights[:, 1:] * expert[1]
    torch.testing.assert_close(out[:3], expected[:3], atol=1e-6, rtol=1e-6)
    assert not out[3].any()


def test_generous_capacity_changes_nothing():
    layer = moe(num_experts=4, top_k=2, capacity_factor=4.0)
    x = torch.randn(3, 5, D)
    torch.testing.assert_close(layer(x), naive(layer, x), atol=1e-5, rtol=1e-5)


def test_frames_do_not_depend_on_their_batch_without_capacity():
    layer = moe(num_experts=4, top_k=2).eval()
    x = torch.randn(1, 9, D)
    batch = torch.cat([x, 100 * torch.randn(2, 9, D)])
    torch.testing.assert_close(layer(batch)[:1], layer(x), atol=1e-5, rtol=1e-5)


def test_training_forwards_count_assignments_and_eval_does_not():
    layer = moe(num_experts=4, top_k=2)
    x = torch.randn(2, 10, D)
    expected = torch.bincount(layer.gate(x.view(-1, D)).topk(2).indices.view(-1), minlength=4).tolist()
    layer(x)
    layer(x)
    layer.eval()(x)
    assert layer.pop_step_counts() == ([2 * c for c in expected], [0, 0, 0, 0])
    assert layer.pop_step_counts() == ([0] * 4, [0] * 4)
    assert layer.total_counts == [2 * c for c in expected]


def test_total_counts_travel_with_the_state_dict(tmp_path):
    layer = moe(num_experts=3, top_k=1)
    layer(torch.randn(4, 5, D))
    torch.save(layer.state_dict(), tmp_path / "ckpt.pt")
    fresh = moe(num_experts=3, top_k=1)
    fresh.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True))
    assert fresh.total_counts == layer.total_counts and sum(fresh.total_counts) == 20
    averaged = {k: v.double() / 2 + v.double() / 2 for k, v in layer.state_dict().items()}
    fresh.load_state_dict(averaged)  # checkpoint averaging turns the counts into floats
    assert fresh.total_counts == layer.total_counts


def test_state_dict_keys_are_pinned():
    assert sorted(moe(num_experts=2, top_k=1, gated=True).state_dict()) == [
        "_extra_state", "b_1", "b_2", "b_gate", "gate.weight", "w_1", "w_2", "w_gate"
    ]
    layer = moe(num_experts=2, top_k=1, bias=False)
    assert sorted(layer.state_dict()) == ["_extra_state", "gate.weight", "w_1", "w_2"]
    assert layer.w_1.shape == (2, H, D) and layer.w_2.shape == (2, D, H)


def test_experts_are_initialised_like_linear_layers():
    layer = moe(num_experts=2, top_k=1)
    assert layer.w_1.abs().max() <= 1 / math.sqrt(D) and layer.w_2.abs().max() <= 1 / math.sqrt(H)
    assert layer.w_1.std() > 0.5 / math.sqrt(3 * D)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"num_experts": 0}, "num_experts: must be at least 1, got 0"),
        ({"num_experts": 4, "top_k": 5}, "top_k: must be between 1 and num_experts (4), got 5"),
        ({"capacity_factor": 0.0}, "capacity_factor: must be positive or null, got 0.0"),
        ({"dispatch": "bmm"}, "dispatch: must be one of auto, grouped, padded, got 'bmm'"),
    ],
)
def test_bad_values_are_named(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        moe(**kwargs)


def test_unknown_key_names_its_path():
    with pytest.raises(ConfigError, match=r"ffn.experts: unknown key for ffn 'moe'; did you mean num_experts\?"):
        moe(experts=4)


def test_moe_conformer_trains():
    config = {
        "type": "conformer",
        "d_model": 32,
        "heads": 4,
        "num_blocks": 2,
        "ffn": {"type": "moe", "num_experts": 4, "top_k": 2, "hidden": 64},
        "encoder_block": {"type": "conformer", "conv_kernel": 5},
    }
    encoder = build_component("encoder", config, "encoder", input_dim=40).train()
    out, lens = encoder(torch.randn(3, 100, 40), torch.tensor([100, 80, 17]))
    assert out.shape == (3, 24, 32) and lens.tolist() == [24, 19, 3]
    F.mse_loss(out, torch.randn_like(out)).backward()
    layers = [m for m in encoder.modules() if isinstance(m, MoEFeedForward)]
    assert len(layers) == 4  # macaron + final FFN in both blocks
    assert all(p.grad is not None and p.grad.any() for layer in layers for p in layer.parameters())


def test_auto_dispatch_pads_only_off_the_cpu_and_only_balanced_groups():
    layer = moe(num_experts=4, top_k=2)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not layer._pads([5, 5, 5, 5], 20, cpu)
    assert layer._pads([5, 5, 5, 5], 20, cuda)
    assert layer._pads([7, 5, 4, 4], 20, cuda)  # 28 padded rows for 20: within 50 %
    assert not layer._pads([14, 2, 2, 2], 20, cuda)
    assert moe(num_experts=4, top_k=2, dispatch="padded")._pads([14, 2, 2, 2], 20, cpu)


@pytest.mark.parametrize("dispatch", ["grouped", "padded"])
@pytest.mark.parametrize("top_k", [1, 2])
def test_runs_under_bf16_autocast(dispatch, top_k):
    layer = moe(num_experts=4, top_k=top_k, dispatch=dispatch)
    x = torch.randn(2, 5, D)
    for grad in (True, False):
        with torch.autocast("cpu", dtype=torch.bfloat16), torch.set_grad_enabled(grad):
            out = layer(x)
        torch.testing.assert_close(out, naive(layer, x).detach(), atol=0.05, rtol=0.05)


@pytest.mark.parametrize("top_k", [1, 2])
def test_inference_with_packed_expert_weights_equals_the_plain_kernels(top_k):
    layer = optimize_for_cpu_inference(MoEFeedForward(d_model=D, num_experts=4, top_k=top_k, hidden=H, dispatch="grouped"))
    x = torch.randn(2, 9, D)
    with torch.no_grad():
        with plain_kernels():
            expected = layer(x)
        torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)
        layer.w_2.add_(0.5)  # the packed copies must follow the weights
        with plain_kernels():
            expected = layer(x)
        torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


def test_training_drops_the_packed_expert_weights():
    layer = optimize_for_cpu_inference(MoEFeedForward(d_model=D, num_experts=4, top_k=1, hidden=H, dispatch="grouped"))
    x = torch.randn(1, 9, D)
    with torch.no_grad():
        layer(x)
    assert layer._packer._packed  # inference made the copies
    layer.train()(x).sum().backward()
    assert not layer._packer._packed  # a training forward freed them
