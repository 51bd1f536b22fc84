"""The stateless predictor of icefall (Ghodsi et al., 2020), registered as ``predictor``
``stateless``: an embedding and a causal convolution over the last ``context_size`` tokens."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from speechforge.errors import ConfigError
from speechforge.registry import current_path
from speechforge_plugins.rnnt.predictor import Predictor, PredictorState, embed


class StatelessPredictor(Predictor):
    """Embedding (``dim``) → grouped Conv1d over ``context_size`` tokens, no padding inside
    (the state supplies the left context) → ReLU. ``context_size: 1`` is the embedding alone.

    icefall's form: ``nn.Conv1d(dim, dim, context_size, groups=dim // 4, bias=False)``.
    State: the last ``context_size - 1`` tokens (N, context_size - 1), -1 before the start
    (a zero embedding, as icefall's left padding).

    Keys: ``dim``, ``context_size``, ``conv_groups`` (0: ``dim // 4``).
    """

    def __init__(self, *, vocab_size: int, dim: int = 512, context_size: int = 2, conv_groups: int = 0) -> None:
        super().__init__()
        if context_size < 1:
            raise ConfigError(f"{current_path() or 'predictor'}.context_size: must be >= 1, got {context_size}")
        groups = conv_groups or max(1, dim // 4)
        if dim % groups:
            raise ConfigError(f"{current_path() or 'predictor'}.conv_groups: must divide dim ({dim}), got {groups}")
        self.embedding = nn.Embedding(vocab_size, dim)
        self.context_size = context_size
        self.conv = nn.Conv1d(dim, dim, context_size, groups=groups, bias=False) if context_size > 1 else None
        self.activation = nn.ReLU()
        self.output_dim = dim

    def initial_state(self, batch_size: int, device: torch.device) -> PredictorState:
        return (torch.full((batch_size, self.context_size - 1), -1, dtype=torch.long, device=device),)

    def forward(self, tokens: Tensor, state: PredictorState | None = None) -> tuple[Tensor, PredictorState]:
        """Args: tokens (N, U); state (previous tokens (N, context_size - 1),) or None.
        Returns (N, U, dim) and the last ``context_size - 1`` tokens."""
        (history,) = state if state is not None else self.initial_state(tokens.size(0), tokens.device)
        context = torch.cat((history, tokens), dim=1)  # (N, context_size - 1 + U)
        x = embed(self.embedding, context)  # (N, c - 1 + U, dim)
        if self.conv is not None:
            x = self.conv(x.transpose(1, 2)).transpose(1, 2)  # (N, U, dim)
        return self.activation(x), (context[:, context.size(1) - (self.context_size - 1) :],)
