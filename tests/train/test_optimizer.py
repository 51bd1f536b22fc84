"""``optim.type``: adamw, adam and torch's adafactor with the section's keys; Adam-only keys with
adafactor and unknown types are refused."""
from __future__ import annotations

import pytest
import torch

from speechforge.errors import ConfigError
from speechforge.train.optimizer import make_optimizer
from speechforge.train.options import OptimOptions


@pytest.mark.parametrize("kind,cls", [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam), ("adafactor", torch.optim.Adafactor)])
def test_each_type_is_torchs_optimizer_with_the_section_keys(kind, cls):
    layer = torch.nn.Linear(4, 3)
    optimizer = make_optimizer(OptimOptions(type=kind, lr=0.02, weight_decay=0.0), layer.parameters())
    assert type(optimizer) is cls
    assert optimizer.defaults["lr"] == 0.02 and optimizer.defaults["weight_decay"] == 0.0
    before = layer.weight.detach().clone()
    layer(torch.randn(5, 4)).square().sum().backward()
    optimizer.step()
    assert not torch.equal(before, layer.weight)


def test_adafactor_refuses_adam_keys_and_unknown_types_fail():
    with pytest.raises(ConfigError, match="optim.betas, optim.eps: keys of adam/adamw"):
        make_optimizer(OptimOptions(type="adafactor", betas=[0.9, 0.99]), torch.nn.Linear(2, 2).parameters())
    with pytest.raises(ConfigError, match="optim.type: one of adamw, adam, adafactor, got 'sgd'"):
        make_optimizer(OptimOptions(type="sgd"), torch.nn.Linear(2, 2).parameters())
