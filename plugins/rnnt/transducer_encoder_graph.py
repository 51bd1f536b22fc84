"""``encoder.onnx`` of icefall's transducer layout, as sherpa-onnx's
``OfflineRecognizer.from_transducer`` runs it: filterbanks in, the encoder's output through the
joiner's encoder projection out (icefall applies that projection here, so the joiner graph
only adds and classifies)."""
from __future__ import annotations

from torch import Tensor, nn

from speechforge.deploy.sample_scale import int16_scaled_log_mel
from speechforge.modules.block_stack_encoder import BlockStackEncoder
from speechforge.modules.fbank_frontend import FbankFrontend
from speechforge_plugins.rnnt.joiner import Joiner


class TransducerEncoderGraph(nn.Module):
    """int16 scale → CMVN → encoder (full context) → ``joiner.encoder_proj``; the model's own
    modules, not copies.

    sherpa-onnx computes a transducer's filterbanks on samples in [-1, 1] and the Kaldi mode of
    the fbank frontend on int16-scaled ones, so the graph converts them first
    (:func:`~speechforge.deploy.sample_scale.int16_scaled_log_mel`), then applies the global
    CMVN that sherpa-onnx leaves to the model.
    """

    def __init__(self, frontend: FbankFrontend, encoder: BlockStackEncoder, joiner: Joiner) -> None:
        super().__init__()
        self.frontend = frontend
        self.encoder = encoder
        self.joiner = joiner

    def forward(self, x: Tensor, x_lens: Tensor) -> tuple[Tensor, Tensor]:
        """Args: x (N, T, F) Kaldi log-mel filterbanks of samples in [-1, 1]; x_lens (N,) int64.
        Returns: encoder_out (N, T', J) and encoder_out_lens (N,) int64."""
        feats = (int16_scaled_log_mel(x) - self.frontend.cmvn_mean) * self.frontend.cmvn_istd  # (N, T, F)
        encoder_out, encoder_out_lens = self.encoder(feats, x_lens, -1)  # (N, T', D)
        return self.joiner.encoder_proj(encoder_out), encoder_out_lens
