"""Decode one utterance while its audio arrives: features, encoder chunks with attention and
convolution caches, and a CTC prefix beam search that moves forward frame by frame."""
from __future__ import annotations

import torch
from torch import Tensor

from speechforge.decode.ctc_prefix_beam_search import NEG_INF, Beams, _logadd, extend_prefix_beams
from speechforge.errors import ConfigError


class StreamingDecoder:
    """Feeds ``accept_waveform`` pieces through the frontend and the encoder's
    ``forward_chunk``, one chunk of ``chunk_size`` encoder frames at a time, and keeps the
    CTC prefix beams up to date, so that :meth:`partial` is the best hypothesis so far.

    Features are computed only for the new frames (the frontend's frames are independent
    windows of ``win_length`` samples every ``hop_length``), so the cost per chunk does not
    grow with the utterance. :meth:`finish` encodes what is left and returns all encodings,
    for a second pass such as attention rescoring.
    """

    def __init__(self, model, chunk_size: int, num_left_chunks: int = -1, beam_size: int = 10, blank_id: int = 0) -> None:
        if chunk_size <= 0:
            raise ConfigError(f"--chunk-size: streaming needs a chunk of at least 1 frame, got {chunk_size}")
        encoder = model.encoder
        if not hasattr(encoder, "forward_chunk"):
            raise ConfigError(f"encoder: {type(encoder).__name__} has no forward_chunk, so it cannot stream")
        frontend = model.frontend
        if not (hasattr(frontend, "win_length") and hasattr(frontend, "hop_length")):
            raise ConfigError(f"frontend: {type(frontend).__name__} does not say its window and hop, so it cannot stream")
        model.find_ctc_head("streaming decoding")  # the partial hypotheses are CTC prefix beams
        self.model = model
        self.chunk_size = chunk_size
        self.beam_size = beam_size
        self.blank_id = blank_id
        self.required_cache_size = chunk_size * num_left_chunks if num_left_chunks >= 0 else -1
        factor, self.context = encoder.embed.factor, encoder.embed.right_context + 1
        self.window = (chunk_size - 1) * factor + self.context  # feature frames per chunk
        self.stride = chunk_size * factor
        self.reset()

    def reset(self) -> None:
        """Forget everything; the next sample starts a new utterance."""
        self.samples = torch.zeros(0)
        self.sample_start = 0  # absolute index of samples[0]
        self.feats: Tensor | None = None  # (frames, F) not yet consumed by a full window
        self.feat_start = 0  # absolute index of feats[0]
        self.frames_done = 0  # feature frames computed so far
        self.offset = 0  # encoder frames produced so far
        self.att_cache = torch.zeros(0, 0, 0, 0)
        self.cnn_cache = torch.zeros(0, 0, 0, 0)
        self.encodings: list[Tensor] = []
        self.beams: Beams = {(): (0.0, NEG_INF)}

    @torch.no_grad()
    def accept_waveform(self, samples: Tensor) -> int:
        """Add samples (S,) at the model's rate; encode every chunk now complete.

        Returns: the number of chunks encoded by this call.
        """
        self.samples = torch.cat((self.samples, samples.detach().float().cpu().flatten()))
        self._compute_features()
        chunks = 0
        while self.feats is not None and self.feats.size(0) >= self.window:
            self._encode(self.feats[: self.window])
            self.feats = self.feats[self.stride :]
            self.feat_start += self.stride
            chunks += 1
        return chunks

    @torch.no_grad()
    def finish(self) -> Tensor:
        """Encode the last, shorter chunk. Returns all encodings (1, T', D)."""
        if self.feats is not None and self.feats.size(0) >= self.context:
            self._encode(self.feats)
        self.feats = None
        if not self.encodings:
            return torch.zeros(1, 0, self.model.encoder.output_dim)
        return torch.cat(self.encodings, dim=1)

    def partial(self) -> list[int]:
        """The best token sequence of the CTC prefix beam search so far."""
        return list(max(self.beams.items(), key=lambda kv: _logadd(*kv[1]))[0])

    def _compute_features(self) -> None:
        frontend = self.model.frontend
        total = self.sample_start + self.samples.numel()
        available = max(0, (total - frontend.win_length) // frontend.hop_length + 1)
        if available <= self.frames_done:
            return
        first = self.frames_done * frontend.hop_length - self.sample_start
        last = (available - 1) * frontend.hop_length + frontend.win_length - self.sample_start
        segment = self.samples[first:last].unsqueeze(0)  # (1, S')
        new, _ = frontend(segment, torch.tensor([segment.size(1)]))  # (1, frames, F)
        self.feats = new[0] if self.feats is None else torch.cat((self.feats, new[0]))
        self.frames_done = available
        keep_from = available * frontend.hop_length - self.sample_start  # next frame's first sample
        self.samples = self.samples[keep_from:]
        self.sample_start += keep_from

    def _encode(self, feats: Tensor) -> None:
        ys, self.att_cache, self.cnn_cache = self.model.encoder.forward_chunk(
            feats.unsqueeze(0), self.offset, self.required_cache_size, self.att_cache, self.cnn_cache
        )  # ys (1, chunk, D)
        self.offset += ys.size(1)
        self.encodings.append(ys)
        log_probs = self.model.ctc(ys)[0]  # (chunk, V)
        self.beams = extend_prefix_beams(self.beams, log_probs, self.beam_size, self.blank_id)
