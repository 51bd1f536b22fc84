"""``decoder.onnx`` of icefall's transducer layout: the last ``context_size`` tokens of each
hypothesis in, the stateless predictor's output through the joiner's predictor projection out.

sherpa-onnx keeps no predictor state: it passes the last ``context_size`` tokens every time,
``-1`` standing for "before the start" (its first call is ``[-1, ..., -1, 0]``, the blank as
start symbol), which is exactly the stateless predictor's own state plus the newest token.
"""
from __future__ import annotations

from torch import Tensor, nn

from speechforge_plugins.rnnt.transducer_decoder import TransducerDecoder


class TransducerDecoderGraph(nn.Module):
    """The transducer decoder (a :class:`StatelessPredictor` and ``joiner.predictor_proj``) on
    one token, its ``context_size - 1`` predecessors given as the predictor's state."""

    def __init__(self, decoder: TransducerDecoder) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, y: Tensor) -> Tensor:
        """Args: y (N, context_size) int64 token ids, oldest first, -1 before the start.
        Returns: decoder_out (N, J)."""
        out, _ = self.decoder(y[:, -1:], (y[:, :-1],))  # (N, 1, J)
        return out[:, 0]
