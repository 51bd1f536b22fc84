"""The transducer beam search of Graves (2012) as icefall and ESPnet run it, registered as
``search`` ``transducer_beam_search``: several tokens per frame, any predictor; it streams."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from speechforge_plugins.rnnt.beams import Beam, FrameBeamSearch, Tokens
from speechforge_plugins.rnnt.predictor import PredictorState, select_state
from speechforge_plugins.rnnt.transducer_decoder import TransducerDecoder


@dataclass
class Hypothesis:
    """One hypothesis inside a frame: its log-probability, the predictor's projected output
    (J,) and state (1 row) after its last token, and the tokens it added on this frame."""

    score: float
    predicted: Tensor
    state: PredictorState
    symbols: int = 0


def add(table: dict[Tokens, Hypothesis], tokens: Tokens, hyp: Hypothesis) -> None:
    """Insert, adding the probabilities of a hypothesis already there with the same tokens."""
    if tokens in table:
        hyp.score = float(torch.logaddexp(torch.tensor(table[tokens].score), torch.tensor(hyp.score)))
        hyp.symbols = min(hyp.symbols, table[tokens].symbols)
    table[tokens] = hyp



class TransducerBeamSearch(FrameBeamSearch):
    """Per frame: take the best open hypothesis, close it with blank (it moves to the next
    frame) and open its ``beam_size`` best one-token extensions; stop when ``beam_size`` closed
    hypotheses are better than every open one. A hypothesis adds at most ``max_symbols`` tokens
    per frame, which bounds the loop.

    Keys: ``beam_size``, ``max_symbols``, ``decoder`` (which of several transducer decoders).
    """

    method = "transducer_beam_search"

    def __init__(self, *, beam_size: int = 4, max_symbols: int = 3, decoder: str | None = None) -> None:
        if beam_size < 1 or max_symbols < 1:
            raise ValueError(f"beam_size and max_symbols must be >= 1, got {beam_size} and {max_symbols}")
        self.beam_size, self.max_symbols = beam_size, max_symbols
        self.decoder_name = decoder

    def advance(self, decoder: TransducerDecoder, beam: Beam, frame: Tensor) -> Beam:
        """The beam after one frame. Args: frame (J,) the projected encoding."""
        opened: dict[Tokens, Hypothesis] = {
            tokens: Hypothesis(float(beam.scores[h]), beam.predicted[h], select_state(beam.state, torch.tensor([h])))
            for h, tokens in enumerate(beam.tokens)
        }
        closed: dict[Tokens, Hypothesis] = {}
        while opened:
            tokens = max(opened, key=lambda key: opened[key].score)
            hyp = opened.pop(tokens)
            log_probs = torch.log_softmax(decoder.joiner(frame, hyp.predicted).float(), dim=-1)  # (V,)
            add(closed, tokens, Hypothesis(hyp.score + float(log_probs[decoder.blank_id]), hyp.predicted, hyp.state))
            if hyp.symbols < self.max_symbols:
                self.open_extensions(decoder, opened, tokens, hyp, log_probs)
            closed = dict(sorted(closed.items(), key=lambda item: -item[1].score)[: self.beam_size])
            best_open = max((h.score for h in opened.values()), default=float("-inf"))
            if sum(h.score > best_open for h in closed.values()) >= self.beam_size:
                break
        keys = [key for key in closed]
        return Beam(
            keys,
            torch.tensor([closed[k].score for k in keys], device=beam.scores.device),
            torch.stack([closed[k].predicted for k in keys]),
            tuple(torch.cat(parts) for parts in zip(*(closed[k].state for k in keys))),
        )

    def open_extensions(
        self, decoder: TransducerDecoder, opened: dict[Tokens, Hypothesis], tokens: Tokens, hyp: Hypothesis, log_probs: Tensor
    ) -> None:
        """Open ``hyp``'s ``beam_size`` best non-blank one-token extensions (one predictor call)."""
        log_probs = log_probs.clone()
        log_probs[decoder.blank_id] = float("-inf")
        values, best = log_probs.topk(min(self.beam_size, log_probs.numel() - 1))
        count = best.numel()
        predicted, state = decoder(best.unsqueeze(1), tuple(part.expand(count, *part.shape[1:]) for part in hyp.state))
        for j in range(count):
            add(
                opened, tokens + (int(best[j]),),
                Hypothesis(hyp.score + float(values[j]), predicted[j, 0], select_state(state, torch.tensor([j])), hyp.symbols + 1),
            )  # fmt: skip
