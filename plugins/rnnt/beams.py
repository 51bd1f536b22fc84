"""Hypothesis sets of the transducer beam searches: token sequences with their log-probability,
their predictor state and projected predictor output, grown frame by frame."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from speechforge_plugins.rnnt.predictor import PredictorState, select_state
from speechforge_plugins.rnnt.transducer_decoder import TransducerDecoder

Tokens = tuple[int, ...]


@dataclass
class Beam:
    """H hypotheses of one utterance.

    Attributes:
        tokens: each hypothesis's emitted tokens.
        scores: (H,) log-probabilities.
        predicted: (H, J) the joiner's predictor projection after each hypothesis's last token.
        state: the predictor's state of each hypothesis (H rows).
    """

    tokens: list[Tokens]
    scores: Tensor
    predicted: Tensor
    state: PredictorState

    def best(self) -> list[int]:
        return list(self.tokens[int(self.scores.argmax())])

    def nbest(self) -> list[tuple[list[int], float]]:
        """Every hypothesis with its score, best first."""
        order = self.scores.argsort(descending=True).tolist()
        return [(list(self.tokens[i]), float(self.scores[i])) for i in order]


def start_beam(decoder: TransducerDecoder, device: torch.device) -> Beam:
    """The beam before any frame: the empty hypothesis with log-probability 0."""
    start = torch.full((1, 1), decoder.blank_id, dtype=torch.long, device=device)
    predicted, state = decoder(start)
    return Beam([()], torch.zeros(1, device=device), predicted[:, 0], state)


def extend(decoder: TransducerDecoder, beam: Beam, sources: Tensor, tokens: Tensor, keys: list[Tokens], scores: Tensor) -> Beam:
    """The beam whose hypothesis i is ``beam``'s hypothesis ``sources[i]`` followed by
    ``tokens[i]`` (blank: nothing emitted, the predictor unchanged), named ``keys[i]`` and
    scored ``scores[i]``; the predictor runs once on all emitted tokens.

    Args: sources (M,), tokens (M,), scores (M,).
    """
    predicted = beam.predicted.index_select(0, sources)  # (M, J)
    state = select_state(beam.state, sources)
    emitted = (tokens != decoder.blank_id).nonzero().flatten()  # (E,)
    if emitted.numel():
        new_predicted, new_state = decoder(tokens[emitted].unsqueeze(1), select_state(state, emitted))
        predicted = predicted.index_copy(0, emitted, new_predicted[:, 0])
        state = tuple(part.index_copy(0, emitted, new) for part, new in zip(state, new_state))
    return Beam(keys, scores, predicted, state)
