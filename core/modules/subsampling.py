"""Conv2d subsampling of features in time and frequency (4x, 6x or 8x), as in ESPnet/WeNet.

Parameter names (``conv``, ``out``) follow ESPnet's ``Conv2dSubsampling``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from speechforge.errors import ConfigError
from speechforge.interfaces import ChunkWindow
from speechforge.modules.export_mode import is_exporting

# factor -> (kernel, stride) of each conv layer
_LAYERS: dict[int, tuple[tuple[int, int], ...]] = {
    4: ((3, 2), (3, 2)),
    6: ((3, 2), (5, 3)),
    8: ((3, 2), (3, 2), (3, 2)),
}
# Elements of the first conv's output computed at a time (2 MiB in fp32), see ``forward``,
# and the fewest output frames per chunk, so that each conv call keeps enough work.
_CHUNK_ELEMENTS = 1 << 19
_MIN_CHUNK_FRAMES = 32
NORMS = ("none", "layer_norm")


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of each (time, frequency) position of a (B, C, T, F) map:
    per position, so chunked and streaming inputs normalise exactly as one pass does."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (B, C, T, F). Returns (B, C, T, F)."""
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Conv2dSubsampling(nn.Module):
    """Strided 2-D convolutions, each followed by an optional normalisation and ReLU, then a
    linear projection to ``d_model``.

    ``norm``: ``none`` (ESPnet/WeNet) or ``layer_norm`` over the channels after each conv
    (the USM encoder's "normalization and ReLU" per layer; per position, unlike a batch norm,
    so the long-input split and streaming stay exact). With a norm the layers are indexed
    ``conv.0`` (conv), ``conv.1`` (norm), ``conv.3``...

    ``channels`` (default ``d_model``, as in ESPnet/WeNet) sets the conv width; on a CPU a
    narrower stack saves most of the subsampling's cost, which dominates small models.

    Long inputs go through the stack a few output frames at a time, each chunk with exactly
    the input window its frames see, so the result is that of one pass. The first conv's
    output is the largest activation of the whole encoder (B x 256 x T/2 x F/2: 160 MB for
    8 utterances of 10 s); kept to a few MB per chunk it stays in cache and is reused by the
    allocator instead of being page-faulted in anew, which makes the subsampling a quarter to
    a third faster on a CPU, forward and backward. An exported graph runs the stack in one pass
    (same values): the split is a loop over a length the graph only knows at run time.

    Attributes:
        factor: input frames per output frame.
        right_context: extra input frames the first output frame needs beyond ``factor``
            (streaming windows overlap by this much so the subsampling keeps no cache; see
            :meth:`chunk_window`).
    """

    def __init__(self, input_dim: int, d_model: int, factor: int = 4, channels: int = 0, norm: str = "none") -> None:
        super().__init__()
        if factor not in _LAYERS:
            raise ValueError(f"subsampling factor must be one of {sorted(_LAYERS)}, got {factor}")
        if norm not in NORMS:
            raise ConfigError(f"subsampling_norm: must be one of {', '.join(NORMS)}, got {norm!r}")
        width = channels or d_model
        layers: list[nn.Module] = []
        channels, freq, self.right_context = 1, input_dim, 0
        stride_so_far = 1
        for kernel, stride in _LAYERS[factor]:
            layers.append(nn.Conv2d(channels, width, kernel, stride))
            if norm == "layer_norm":
                layers.append(ChannelLayerNorm(width))
            layers.append(nn.ReLU(inplace=True))
            channels, freq = width, (freq - kernel) // stride + 1
            self.right_context += (kernel - 1) * stride_so_far
            stride_so_far *= stride
        self.factor = factor
        self.conv = nn.Sequential(*layers)
        self.out = nn.Linear(width * freq, d_model)
        first_kernel, first_stride = _LAYERS[factor][0]
        # first-conv output elements per output frame and utterance
        self._first_conv_elements = factor // first_stride * width * ((input_dim - first_kernel) // first_stride + 1)

    def chunk_window(self, chunk_size: int) -> ChunkWindow:
        """The input window of ``chunk_size`` output frames: ``(chunk - 1) * factor +
        right_context + 1`` frames, every ``chunk * factor`` frames; the one place this
        arithmetic lives (streaming and the long-input split of :meth:`forward` use it)."""
        if chunk_size <= 0:
            raise ValueError(f"a chunk window needs chunk_size > 0, got {chunk_size}")
        min_frames = self.right_context + 1
        return ChunkWindow((chunk_size - 1) * self.factor + min_frames, chunk_size * self.factor, min_frames)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        for kernel, stride in _LAYERS[self.factor]:
            lengths = (lengths - kernel) // stride + 1
        return lengths.clamp(min=0)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Args: x (B, T, F), lengths (B,). Returns (B, T', D), lengths (B,)."""
        x = x.unsqueeze(1)  # (B, 1, T, F)
        frames = x.size(2)
        for kernel, stride in _LAYERS[self.factor]:
            frames = (frames - kernel) // stride + 1
        step = max(_MIN_CHUNK_FRAMES, _CHUNK_ELEMENTS // (x.size(0) * self._first_conv_elements))
        if is_exporting() or frames <= step:  # a graph's frame count is symbolic: one pass
            return self._subsample(x), self.output_lengths(lengths)
        window = self.chunk_window(step)
        chunks = [
            self._subsample(x[:, :, start : start + window.frames])
            for start in range(0, frames * self.factor, window.stride)
        ]
        return torch.cat(chunks, dim=1), self.output_lengths(lengths)

    def _subsample(self, x: Tensor) -> Tensor:
        """Args: x (B, 1, T, F). Returns (B, T', D)."""
        x = self.conv(x)  # (B, C, T', F')
        b, c, t, f = x.size()
        return self.out(x.transpose(1, 2).reshape(b, t, c * f))
