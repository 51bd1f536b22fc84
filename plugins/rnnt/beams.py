"""Hypothesis sets of the transducer beam searches: token sequences with their log-probability,
their predictor state and projected predictor output, grown frame by frame."""
from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

from speechforge.interfaces import StreamingSearch
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


@dataclass
class BeamsState:
    """Each utterance's beam."""

    beams: list[Beam]


class FrameBeamSearch(StreamingSearch[BeamsState]):
    """A transducer beam search that grows each utterance's beam one encoder frame at a time
    (:meth:`advance`), so it streams: the beams carry the predictor states across chunks.

    ``method`` is the registry name errors start with; ``decoder_name`` picks one of several
    transducer decoders (None: the only one)."""

    method: str
    decoder_name: str | None = None

    def transducer(self, model) -> TransducerDecoder:
        return model.find_decoder(TransducerDecoder, user=f"decode method {self.method}", name=self.decoder_name)

    @torch.no_grad()
    def init(self, model, batch_size: int) -> BeamsState:
        decoder = self.transducer(model)
        device = next(decoder.parameters()).device
        return BeamsState([start_beam(decoder, device) for _ in range(batch_size)])

    @torch.no_grad()
    def step(self, model, state: BeamsState, encoder_chunk: Tensor, chunk_lens: Tensor) -> BeamsState:
        decoder = self.transducer(model)
        am = decoder.joiner.encoder_proj(encoder_chunk)  # (B, T, J)
        for i, length in enumerate(chunk_lens.tolist()):
            for t in range(length):
                state.beams[i] = self.advance(decoder, state.beams[i], am[i, t])
        return state

    @abstractmethod
    def advance(self, decoder: TransducerDecoder, beam: Beam, frame: Tensor) -> Beam:
        """The beam after one frame. Args: frame (J,) the projected encoding."""

    def partial(self, state: BeamsState) -> list[list[int]]:
        return [beam.best() for beam in state.beams]

    def finalize(self, model, state: BeamsState) -> list[list[int]]:
        return self.partial(state)
