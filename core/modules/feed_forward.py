"""Position-wise feed-forward network, registered as ``ffn`` ``dense``.

Parameter names (``w_1``, ``w_2``) follow ESPnet's ``PositionwiseFeedForward``.
"""
from __future__ import annotations

from torch import Tensor, nn

from speechforge.interfaces import FeedForward
from speechforge.modules.activation import make_activation
from speechforge.modules.dropout import Dropout
from speechforge.modules.fused_linear import linear


class PositionwiseFeedForward(FeedForward):
    """``w_2(dropout(act(w_1 x)))``; with ``gated``, ``act(w_1 x) * w_gate x`` (GLU family).

    In inference on a CPU, ``w_1``'s bias and activation run fused into its matmul
    (:mod:`speechforge.modules.fused_linear`).
    """

    def __init__(
        self,
        *,
        d_model: int,
        hidden: int = 2048,
        activation: str = "swish",
        dropout: float = 0.1,
        gated: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.w_1 = nn.Linear(d_model, hidden, bias=bias)
        self.w_gate = nn.Linear(d_model, hidden, bias=bias) if gated else None
        self.activation = make_activation(activation)
        self.dropout = Dropout(dropout)
        self.w_2 = nn.Linear(hidden, d_model, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (B, T, D). Returns (B, T, D)."""
        h = linear(x, self.w_1.weight, self.w_1.bias, self.activation)  # (B, T, hidden)
        if self.w_gate is not None:
            h = h * linear(x, self.w_gate.weight, self.w_gate.bias)
        return linear(self.dropout(h), self.w_2.weight, self.w_2.bias)
