"""An LSTM predictor, registered as ``predictor`` ``lstm`` (the USM RNN-T's 3 x 640 LSTM)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from speechforge.errors import ConfigError
from speechforge.registry import current_path
from speechforge_plugins.rnnt.predictor import Predictor, PredictorState, embed


class LSTMPredictor(Predictor):
    """Embedding → ``layers`` LSTM layers of ``hidden`` units (optionally projected to
    ``projection`` dims, torch's ``proj_size``) → dropout.

    State: ``(h, c)``, h (N, layers, projection or hidden) and c (N, layers, hidden), the
    hypotheses first (torch's LSTM keeps them on dim 1; the transposes stay inside).

    Keys: ``layers``, ``hidden``, ``embedding_dim`` (default ``hidden``), ``projection`` (0:
    none), ``dropout`` (between layers and on the output).
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        layers: int = 1,
        hidden: int = 640,
        embedding_dim: int = 0,
        projection: int = 0,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if layers < 1 or hidden < 1:
            raise ConfigError(f"{current_path() or 'predictor'}: layers and hidden must be >= 1, got layers={layers}, hidden={hidden}")
        if not 0 <= projection < hidden:
            raise ConfigError(f"{current_path() or 'predictor'}.projection: must be 0 (none) or below hidden ({hidden}), got {projection}")
        self.embedding = nn.Embedding(vocab_size, embedding_dim or hidden)
        self.lstm = nn.LSTM(
            embedding_dim or hidden, hidden, num_layers=layers, batch_first=True,
            dropout=dropout if layers > 1 else 0.0, proj_size=projection,
        )  # fmt: skip
        self.dropout = nn.Dropout(dropout)
        self.layers, self.hidden = layers, hidden
        self.output_dim = projection or hidden

    def initial_state(self, batch_size: int, device: torch.device) -> PredictorState:
        dtype = self.embedding.weight.dtype
        h = torch.zeros(batch_size, self.layers, self.output_dim, device=device, dtype=dtype)
        c = torch.zeros(batch_size, self.layers, self.hidden, device=device, dtype=dtype)
        return h, c

    def forward(self, tokens: Tensor, state: PredictorState | None = None) -> tuple[Tensor, PredictorState]:
        """Args: tokens (N, U); state (h, c) or None. Returns (N, U, P) and the next (h, c)."""
        h, c = state if state is not None else self.initial_state(tokens.size(0), tokens.device)
        out, (h, c) = self.lstm(embed(self.embedding, tokens), (h.transpose(0, 1).contiguous(), c.transpose(0, 1).contiguous()))
        return self.dropout(out), (h.transpose(0, 1), c.transpose(0, 1))
