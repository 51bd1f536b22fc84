"""Position-wise feed-forward network, registered as ``ffn`` ``dense``.

Parameter names (``w_1``, ``w_2``) follow ESPnet's ``PositionwiseFeedForward``.
"""
from __future__ import annotations

from torch import Tensor, nn

from speechforge.interfaces import FeedForward
from speechforge.modules.activation import make_activation
from speechforge.modules.dropout import Dropout


class PositionwiseFeedForward(FeedForward):
    """``w_2(dropout(act(w_1 x)))``; with ``gated``, ``act(w_1 x) * w_gate x`` (GLU family).

    The activation follows ``w_1`` directly (``fusable_activations``), so
    :func:`~speechforge.modules.inference_transform.optimize_for_cpu_inference` runs the two
    as one oneDNN matmul with the bias and activation in its epilogue.
    """

    fusable_activations = (("w_1", "activation"),)

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
        h = self.activation(self.w_1(x))  # (B, T, hidden)
        if self.w_gate is not None:
            h = h * self.w_gate(x)
        return self.w_2(self.dropout(h))
