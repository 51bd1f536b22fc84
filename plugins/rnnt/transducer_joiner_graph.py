"""``joiner.onnx`` of icefall's transducer layout: the joiner on already projected encoder and
predictor outputs (the projections are in the encoder and decoder graphs)."""
from __future__ import annotations

from torch import Tensor, nn

from speechforge_plugins.rnnt.joiner import Joiner


class TransducerJoinerGraph(nn.Module):
    """``output(act(encoder_out + decoder_out))``, one (frame, hypothesis) pair per row."""

    def __init__(self, joiner: Joiner) -> None:
        super().__init__()
        self.joiner = joiner

    def forward(self, encoder_out: Tensor, decoder_out: Tensor) -> Tensor:
        """Args: encoder_out (N, J), decoder_out (N, J). Returns: logit (N, V)."""
        return self.joiner(encoder_out, decoder_out)
