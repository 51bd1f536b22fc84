"""The chunked streaming graph of the WeNet CTC layout, as sherpa-onnx's
``OnlineRecognizer.from_wenet_ctc`` runs it: one chunk's features in with every block's
attention and convolution caches, the chunk's CTC log-probabilities and the next caches out.

sherpa-onnx keeps the attention history at a fixed ``required_cache_size`` =
``chunk_size * num_left_chunks`` frames (zeros before the utterance has that many, hidden by
``att_mask``), so the graph returns the newest ``required_cache_size`` frames of each block's
keys and values; ``offset`` counts frames from ``required_cache_size`` on. The graph also
derives from ``offset`` which cache frames hold the utterance and ands that with ``att_mask``,
so a runtime that passes an all-true mask gets the same result as sherpa-onnx.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from speechforge.modules.block_stack_encoder import BlockStackEncoder
from speechforge.modules.ctc_head import CTCHead
from speechforge.modules.fbank_frontend import FbankFrontend
from speechforge.modules.positional_encoding import PositionalEncoding
from speechforge.modules.rel_positional_encoding import RelPositionalEncoding


class WenetChunkCtcGraph(nn.Module):
    """CMVN → subsampling → blocks with caches → CTC log-softmax, for one chunk of a batch of
    one stream. The blocks' streaming states are ``{"att": (1, H, Tc, 2·dk)}`` plus, for a
    convolution, ``"cnn": (1, D, K - 1)``; ``has_conv`` says whether they carry the second."""

    def __init__(self, frontend: FbankFrontend, encoder: BlockStackEncoder, ctc: CTCHead, has_conv: bool) -> None:
        super().__init__()
        self.frontend = frontend
        self.encoder = encoder
        self.ctc = ctc
        self.has_conv = has_conv

    def forward(
        self,
        chunk: Tensor,
        offset: Tensor,
        required_cache_size: Tensor,
        att_cache: Tensor,
        cnn_cache: Tensor,
        att_mask: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Args:
            chunk: (1, W, F) filterbanks before CMVN, W = the chunk's window of frames.
            offset: (1,) int64, ``required_cache_size`` + output frames before this chunk.
            required_cache_size: (1,) int64, Tc.
            att_cache: (L, H, Tc, 2·dk) keys and values of the last Tc frames, per block.
            cnn_cache: (L, 1, D, K - 1) convolution inputs of the last K - 1 frames, per block.
            att_mask: (1, 1, Tc + C) bool, False on cache frames before the utterance.
        Returns: log-probs (1, C, V), the next att_cache (L, H, Tc, 2·dk) and cnn_cache.
        """
        encoder = self.encoder
        x = (chunk - self.frontend.cmvn_mean) * self.frontend.cmvn_istd
        window = torch.full((1,), x.size(1), dtype=torch.long, device=x.device)
        x, _ = encoder.embed(x, window)  # (1, C, D)
        pos_emb = None
        if isinstance(encoder.pos_enc, RelPositionalEncoding):
            x, pos_emb = encoder.pos_enc(x, offset=att_cache.size(2))  # distances over Tc + C keys
        elif isinstance(encoder.pos_enc, PositionalEncoding):
            x, _ = encoder.pos_enc(x, offset=offset - required_cache_size)  # absolute frame index
        cached = torch.minimum(offset - required_cache_size, required_cache_size)  # (1,) utterance frames in the cache
        keys = torch.arange(att_mask.size(-1), device=x.device)  # (Tc + C,)
        att_mask = att_mask & (keys >= att_cache.size(2) - cached).view(1, 1, -1)  # (1, 1, Tc + C)
        next_att, next_cnn = [], []
        for i, block in enumerate(encoder.blocks):
            state = {"att": att_cache[i : i + 1]}
            if self.has_conv:
                state["cnn"] = cnn_cache[i]
            x, state = block(x, att_mask, None, pos_emb, state)
            next_att.append(state["att"][:, :, x.size(1) :])  # (1, H, Tc, 2·dk): drop the oldest chunk
            if self.has_conv:
                next_cnn.append(state["cnn"])
        log_probs = self.ctc(encoder.after_norm(x))  # (1, C, V)
        next_cnn_cache = torch.stack(next_cnn) if self.has_conv else cnn_cache + 0.0
        return log_probs, torch.cat(next_att), next_cnn_cache
