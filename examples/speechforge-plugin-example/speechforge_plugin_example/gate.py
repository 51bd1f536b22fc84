"""The ``gate`` kind this plugin declares: the nonlinearity of a gated FFN's gate branch.

A ``gate`` maps the gate projection (B, T, H) to the per-unit factor (B, T, H) that multiplies
the value projection; ``sigmoid`` gives GLU, ``swish`` SwiGLU and ``gelu`` GEGLU (Shazeer,
2020, "GLU variants improve Transformer"). Factory context: none.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn


class Gate(nn.Module, ABC):
    """Base of every ``gate`` component (what ``registry.add_kind`` checks)."""

    @abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """Args: x (B, T, H), the gate projection. Returns the factors (B, T, H)."""


class SigmoidGate(Gate):
    """GLU's gate: sigmoid(x)."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(x)


class SwishGate(Gate):
    """SwiGLU's gate: x * sigmoid(beta x); beta = 1 is SiLU.

    Args:
        beta: the slope inside the sigmoid.
    """

    def __init__(self, *, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = beta

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(self.beta * x)


class GeluGate(Gate):
    """GEGLU's gate: GELU(x), exact or with the tanh approximation.

    Args:
        approximate: ``"none"`` or ``"tanh"``, as in torch.nn.GELU.
    """

    def __init__(self, *, approximate: str = "none") -> None:
        super().__init__()
        self.activation = nn.GELU(approximate=approximate)

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(x)
