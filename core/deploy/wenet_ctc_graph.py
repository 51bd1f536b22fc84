"""The offline graph of the WeNet CTC layout: features and their lengths in, CTC
log-probabilities and their lengths out, as sherpa-onnx's ``OfflineRecognizer.from_wenet_ctc``
runs it (global CMVN inside the graph, since sherpa-onnx feeds raw filterbanks)."""
from __future__ import annotations

from torch import Tensor, nn

from speechforge.modules.block_stack_encoder import BlockStackEncoder
from speechforge.modules.ctc_head import CTCHead
from speechforge.modules.fbank_frontend import FbankFrontend


class WenetCtcGraph(nn.Module):
    """CMVN → encoder (full context) → CTC log-softmax; the model's own modules, not copies."""

    def __init__(self, frontend: FbankFrontend, encoder: BlockStackEncoder, ctc: CTCHead) -> None:
        super().__init__()
        self.frontend = frontend
        self.encoder = encoder
        self.ctc = ctc

    def forward(self, feats: Tensor, feat_lens: Tensor) -> tuple[Tensor, Tensor]:
        """Args: feats (B, T, F) log-mel filterbanks before CMVN; feat_lens (B,) int64.
        Returns: log-probs (B, T', V) and their lengths (B,) int64."""
        x = (feats - self.frontend.cmvn_mean) * self.frontend.cmvn_istd
        encoder_out, encoder_lens = self.encoder(x, feat_lens, -1)  # (B, T', D)
        return self.ctc(encoder_out), encoder_lens
