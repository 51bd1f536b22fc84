"""The transducer's joint network, registered as ``joiner`` ``linear``."""
from __future__ import annotations

from torch import Tensor, nn

from speechforge.errors import ConfigError
from speechforge.registry import current_path

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


class Joiner(nn.Module):
    """``output(act(encoder_proj(enc) + predictor_proj(pred)))``, split in two so that the
    projections run once per frame and per token, and the sum and output on the (t, u)
    pairs a loss or search needs (k2's pruned loss gathers projected inputs).

    Kind ``joiner`` of the rnnt plugin; context: ``encoder_dim``, ``predictor_dim``,
    ``vocab_size``. Keys: ``dim`` (the joint dimension J), ``activation`` (tanh | relu).
    """

    def __init__(self, *, encoder_dim: int, predictor_dim: int, vocab_size: int, dim: int = 640, activation: str = "tanh") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ConfigError(f"{current_path() or 'joiner'}.activation: must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        self.encoder_proj = nn.Linear(encoder_dim, dim)
        self.predictor_proj = nn.Linear(predictor_dim, dim)
        self.activation = ACTIVATIONS[activation]()
        self.output = nn.Linear(dim, vocab_size)
        self.dim = dim

    def forward(self, encoder_proj: Tensor, predictor_proj: Tensor) -> Tensor:
        """Args: projected encodings (..., J) and projected predictor outputs (..., J),
        broadcastable (e.g. (B, T, 1, J) and (B, 1, U+1, J)). Returns logits (..., V)."""
        return self.output(self.activation(encoder_proj + predictor_proj))
