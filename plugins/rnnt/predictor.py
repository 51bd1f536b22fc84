"""The contract of the ``predictor`` kind (the transducer's label-context network).

A predictor reads the tokens emitted so far and returns one vector per position. Its streaming
state is a tuple of tensors, each with the hypotheses on dim 0, so that searches pick, repeat
and join hypotheses' states without knowing what they hold (:func:`select_state`,
:func:`cat_states`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

#: a predictor's state: tensors with the N hypotheses on dim 0
PredictorState = tuple[Tensor, ...]


class Predictor(nn.Module, ABC):
    """Kind ``predictor`` of the rnnt plugin; context: ``vocab_size``.

    Inputs are blank-prefixed token sequences (icefall's convention: the blank is the start
    symbol). Token ids below 0 are "before the start" and read as zero embeddings.

    Attributes:
        output_dim: P of the outputs.
    """

    output_dim: int

    @abstractmethod
    def initial_state(self, batch_size: int, device: torch.device) -> PredictorState:
        """The state before the first token of ``batch_size`` hypotheses."""

    @abstractmethod
    def forward(self, tokens: Tensor, state: PredictorState | None = None) -> tuple[Tensor, PredictorState]:
        """Args:
            tokens: (N, U) token ids.
            state: from :meth:`initial_state` or an earlier call; None is the initial state.
        Returns: outputs (N, U, P) and the state after the last token.
        """


def select_state(state: PredictorState, index: Tensor) -> PredictorState:
    """The states of hypotheses ``index`` (M,), in that order."""
    return tuple(part.index_select(0, index) for part in state)


def cat_states(states: list[PredictorState]) -> PredictorState:
    """The states of several hypothesis sets, one after the other."""
    return tuple(torch.cat(parts, dim=0) for parts in zip(*states))


def embed(embedding: nn.Embedding, tokens: Tensor) -> Tensor:
    """Embeddings of ``tokens`` (N, U), zeros where a token is negative. Returns (N, U, E)."""
    return embedding(tokens.clamp(min=0)) * (tokens >= 0).unsqueeze(-1).to(embedding.weight.dtype)
