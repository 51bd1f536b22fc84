"""The ``moe_aux`` loss: Switch balance and ST-MoE z-loss formulas, the sum over a model's MoE
layers, gradients to the routers, and the errors when there is nothing to score."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from speechforge.errors import ConfigError
from speechforge.interfaces import LossInputs
from speechforge.registry import build_component
from speechforge_plugins.moe.moe_feed_forward import MoEFeedForward

D = 8


def moe(**kwargs) -> MoEFeedForward:
    return build_component("ffn", {"type": "moe", "hidden": 12, "dropout": 0.0, **kwargs}, "ffn", d_model=D)


def inputs(model: nn.Module) -> LossInputs:
    empty = torch.zeros(1, dtype=torch.long)
    return LossInputs(model, torch.zeros(1, 1, D), empty, torch.zeros(1, 1, dtype=torch.long), empty)


def test_balance_and_z_loss_follow_their_formulas():
    layer = moe(num_experts=4, top_k=2)
    x = torch.randn(3, 7, D)
    layer(x)
    logits = layer.gate(x.view(-1, D))
    counts = torch.bincount(logits.topk(2).indices.view(-1), minlength=4).float()
    fraction = counts / counts.sum()
    probability = torch.softmax(logits, dim=-1).mean(0)
    torch.testing.assert_close(layer.balance_loss(), 4 * (fraction * probability).sum())
    torch.testing.assert_close(layer.z_loss(), torch.logsumexp(logits, dim=-1).square().mean())


def test_balance_loss_is_one_when_perfectly_balanced():
    layer = moe(num_experts=2, top_k=1)
    with torch.no_grad():
        layer.gate.weight.copy_(torch.tensor([[1.0] + [0.0] * (D - 1), [-1.0] + [0.0] * (D - 1)]))
    x = torch.zeros(1, 2, D)
    x[0, 0, 0], x[0, 1, 0] = 1.0, -1.0  # one frame per expert, mirrored probabilities
    layer(x)
    torch.testing.assert_close(layer.balance_loss(), torch.tensor(1.0))


def test_loss_sums_weighted_terms_over_layers_and_trains_the_routers():
    model = nn.Sequential(moe(num_experts=4, top_k=1), moe(num_experts=4, top_k=2))
    model(torch.randn(2, 5, D))
    loss = build_component("loss", {"type": "moe_aux", "balance_weight": 0.5, "z_weight": 0.25}, "losses.1")
    value = loss(inputs(model))
    expected = sum(0.5 * m.balance_loss() + 0.25 * m.z_loss() for m in model)
    torch.testing.assert_close(value, expected)
    value.backward()
    assert all(m.gate.weight.grad.any() for m in model)  # top-1 routers learn from it too


def test_loss_without_moe_layers_is_a_config_error():
    loss = build_component("loss", {"type": "moe_aux"}, "losses.1")
    with pytest.raises(ConfigError, match="moe_aux needs MoE layers in the model"):
        loss(inputs(nn.Linear(D, D)))


def test_scoring_before_any_forward_says_what_to_do():
    with pytest.raises(RuntimeError, match="run the model forward before the MoE losses"):
        moe(num_experts=2, top_k=1).balance_loss()


def test_eval_routing_is_detached():
    layer = moe(num_experts=2, top_k=1).eval()
    layer(torch.randn(1, 3, D))
    assert layer.router_state.logits.grad_fn is None
