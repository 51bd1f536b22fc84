"""Auxiliary router losses for MoE layers, registered as ``loss`` ``moe_aux``.

U2++ MoE trains without them; list this loss to add the Switch Transformer load-balancing loss
(Fedus et al., 2021) and the ST-MoE router z-loss (Zoph et al., 2022) of every MoE layer.
"""
from __future__ import annotations

import torch
from torch import Tensor

from speechforge.errors import ConfigError
from speechforge.interfaces import Loss, LossInputs
from speechforge_plugins.moe.expert_load import moe_layers


class MoEAuxLoss(Loss):
    """``sum over MoE layers of balance_weight * balance + z_weight * z``, read from the
    routing each layer kept during the model's forward on this batch."""

    def __init__(self, *, balance_weight: float = 0.01, z_weight: float = 0.001) -> None:
        super().__init__()
        self.balance_weight = balance_weight
        self.z_weight = z_weight

    def forward(self, inputs: LossInputs) -> Tensor:
        layers = moe_layers(inputs.model)
        if not layers:
            raise ConfigError(
                "losses: moe_aux needs MoE layers in the model (an ffn of type moe); found none"
            )
        terms = [
            self.balance_weight * layer.balance_loss() + self.z_weight * layer.z_loss()
            for _, layer in layers
        ]
        return torch.stack(terms).sum()
