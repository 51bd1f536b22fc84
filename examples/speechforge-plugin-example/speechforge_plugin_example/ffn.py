"""The ``gated`` feed-forward network (kind ``ffn``): a GLU-family FFN whose gate is a
component of this plugin's own ``gate`` kind, chosen in YAML with ``gate: {type: ...}``."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from speechforge.interfaces import FeedForward
from speechforge.registry import build_component


class GatedFeedForward(FeedForward):
    """``w_out(dropout(w_value x * gate(w_gate x)))``, position-wise.

    With ``gate: {type: swish}`` this is core's ``dense`` with ``gated: true`` and
    ``activation: swish`` (its ``w_1`` is our ``w_gate``, its ``w_gate`` our ``w_value``).

    Args:
        d_model: D, given by the encoder block (context, not a config key).
        hidden: H, width of the value and gate projections.
        gate: the ``gate`` component (``sigmoid``, ``swish``, ``gelu``), a name or a mapping.
        dropout: dropout on the gated hidden units, in training only.
        bias: biases on the three projections.
    """

    def __init__(
        self,
        *,
        d_model: int,
        hidden: int = 1024,
        gate: Mapping[str, Any] | str = "swish",
        dropout: float = 0.1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.w_value = nn.Linear(d_model, hidden, bias=bias)
        self.w_gate = nn.Linear(d_model, hidden, bias=bias)
        self.gate = build_component("gate", gate, "gate")
        self.dropout = nn.Dropout(dropout)
        self.w_out = nn.Linear(hidden, d_model, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (B, T, D). Returns (B, T, D)."""
        return self.w_out(self.dropout(self.w_value(x) * self.gate(self.w_gate(x))))
