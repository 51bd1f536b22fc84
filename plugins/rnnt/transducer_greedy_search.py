"""Batched greedy transducer decoding, registered as ``search`` ``transducer_greedy_search``;
it streams, the predictor state carried across chunks."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from speechforge.interfaces import StreamingSearch
from speechforge_plugins.rnnt.predictor import PredictorState
from speechforge_plugins.rnnt.transducer_decoder import TransducerDecoder


@dataclass
class GreedyState:
    """Per utterance the tokens so far; for the batch the predictor's state and its projected
    output (B, J) after each utterance's last token."""

    tokens: list[list[int]]
    predictor_state: PredictorState
    predicted: Tensor  # (B, J)


class TransducerGreedySearch(StreamingSearch[GreedyState]):
    """On each frame, the best token of the joiner; a non-blank one is emitted, fed to the
    predictor and the frame is read again, up to ``max_symbols`` tokens per frame (icefall's
    ``max_sym_per_frame``). All utterances advance together, one frame at a time.

    Keys: ``max_symbols``, ``decoder`` (which of several transducer decoders).
    """

    def __init__(self, *, max_symbols: int = 3, decoder: str | None = None) -> None:
        if max_symbols < 1:
            raise ValueError(f"max_symbols must be >= 1, got {max_symbols}")
        self.max_symbols = max_symbols
        self.decoder_name = decoder

    def transducer(self, model) -> TransducerDecoder:
        return model.find_decoder(TransducerDecoder, user="decode method transducer_greedy_search", name=self.decoder_name)

    @torch.no_grad()
    def init(self, model, batch_size: int) -> GreedyState:
        decoder = self.transducer(model)
        device = next(decoder.parameters()).device
        start = torch.full((batch_size, 1), decoder.blank_id, dtype=torch.long, device=device)
        predicted, state = decoder(start)
        return GreedyState([[] for _ in range(batch_size)], state, predicted[:, 0])

    @torch.no_grad()
    def step(self, model, state: GreedyState, encoder_chunk: Tensor, chunk_lens: Tensor) -> GreedyState:
        decoder = self.transducer(model)
        am = decoder.joiner.encoder_proj(encoder_chunk)  # (B, T, J)
        lengths = chunk_lens.to(am.device)
        for t in range(am.size(1)):
            emitting = lengths > t  # (B,)
            for _ in range(self.max_symbols):
                best = decoder.joiner(am[:, t], state.predicted).argmax(dim=-1)  # (B,)
                emitting = emitting & (best != decoder.blank_id)
                if not bool(emitting.any()):
                    break
                predicted, predictor_state = decoder(best.unsqueeze(1), state.predictor_state)
                state.predicted = torch.where(emitting.unsqueeze(1), predicted[:, 0], state.predicted)
                state.predictor_state = tuple(
                    torch.where(emitting.view(-1, *[1] * (new.dim() - 1)), new, old)
                    for new, old in zip(predictor_state, state.predictor_state)
                )
                for i in emitting.nonzero().flatten().tolist():
                    state.tokens[i].append(int(best[i]))
        return state

    def partial(self, state: GreedyState) -> list[list[int]]:
        return [list(tokens) for tokens in state.tokens]

    def finalize(self, model, state: GreedyState) -> list[list[int]]:
        return self.partial(state)
