"""Conv2d subsampling of features in time and frequency (4x, 6x or 8x), as in ESPnet/WeNet.

Parameter names (``conv``, ``out``) follow ESPnet's ``Conv2dSubsampling``.
"""
from __future__ import annotations

from torch import Tensor, nn

# factor -> (kernel, stride) of each conv layer
_LAYERS: dict[int, tuple[tuple[int, int], ...]] = {
    4: ((3, 2), (3, 2)),
    6: ((3, 2), (5, 3)),
    8: ((3, 2), (3, 2), (3, 2)),
}


class Conv2dSubsampling(nn.Module):
    """Strided 2-D convolutions with ReLU, then a linear projection to ``d_model``.

    ``channels`` (default ``d_model``, as in ESPnet/WeNet) sets the conv width; on a CPU a
    narrower stack saves most of the subsampling's cost, which dominates small models.

    Attributes:
        factor: input frames per output frame.
        right_context: extra input frames the first output frame needs beyond ``factor``
            (streaming windows overlap by this much so the subsampling keeps no cache).
    """

    def __init__(self, input_dim: int, d_model: int, factor: int = 4, channels: int = 0) -> None:
        super().__init__()
        if factor not in _LAYERS:
            raise ValueError(f"subsampling factor must be one of {sorted(_LAYERS)}, got {factor}")
        width = channels or d_model
        layers: list[nn.Module] = []
        channels, freq, self.right_context = 1, input_dim, 0
        stride_so_far = 1
        for kernel, stride in _LAYERS[factor]:
            layers += [nn.Conv2d(channels, width, kernel, stride), nn.ReLU()]
            channels, freq = width, (freq - kernel) // stride + 1
            self.right_context += (kernel - 1) * stride_so_far
            stride_so_far *= stride
        self.factor = factor
        self.conv = nn.Sequential(*layers)
        self.out = nn.Linear(width * freq, d_model)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        for kernel, stride in _LAYERS[self.factor]:
            lengths = (lengths - kernel) // stride + 1
        return lengths.clamp(min=0)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Args: x (B, T, F), lengths (B,). Returns (B, T', D), lengths (B,)."""
        x = self.conv(x.unsqueeze(1))  # (B, C, T', F')
        b, c, t, f = x.size()
        x = self.out(x.transpose(1, 2).reshape(b, t, c * f))
        return x, self.output_lengths(lengths)
