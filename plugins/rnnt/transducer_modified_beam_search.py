"""icefall's modified beam search, registered as ``search`` ``transducer_modified_beam_search``:
at most one token per frame, hypotheses with the same tokens merged; it streams."""
from __future__ import annotations

import torch
from torch import Tensor

from speechforge_plugins.rnnt.beams import Beam, FrameBeamSearch, Tokens, extend
from speechforge_plugins.rnnt.transducer_decoder import TransducerDecoder



class TransducerModifiedBeamSearch(FrameBeamSearch):
    """Per frame, every hypothesis is extended by blank or one token; the ``beam_size`` best
    (hypothesis, token) pairs over the whole beam survive, and pairs that spell the same tokens
    are merged (their probabilities added). Predictor calls are batched over the beam.

    Keys: ``beam_size``, ``decoder`` (which of several transducer decoders).
    """

    method = "transducer_modified_beam_search"

    def __init__(self, *, beam_size: int = 4, decoder: str | None = None) -> None:
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        self.beam_size = beam_size
        self.decoder_name = decoder

    def advance(self, decoder: TransducerDecoder, beam: Beam, frame: Tensor) -> Beam:
        """The beam after one frame. Args: frame (J,) the projected encoding."""
        log_probs = torch.log_softmax(decoder.joiner(frame, beam.predicted).float(), dim=-1)  # (H, V)
        vocab = log_probs.size(1)
        total = (beam.scores.unsqueeze(1) + log_probs).flatten()  # (H * V,)
        top_scores, top = total.topk(min(self.beam_size, total.numel()))
        merged: dict[Tokens, int] = {}
        sources, tokens, scores = [], [], []
        for score, flat in zip(top_scores, top.tolist()):
            source, token = divmod(flat, vocab)
            key = beam.tokens[source] if token == decoder.blank_id else beam.tokens[source] + (token,)
            if key in merged:  # the same tokens reached twice: one hypothesis, probabilities added
                slot = merged[key]
                scores[slot] = torch.logaddexp(scores[slot], score)
                continue
            merged[key] = len(sources)
            sources.append(source)
            tokens.append(token)
            scores.append(score)
        device = beam.scores.device
        return extend(
            decoder, beam, torch.tensor(sources, device=device), torch.tensor(tokens, device=device),
            list(merged), torch.stack(scores),
        )  # fmt: skip
