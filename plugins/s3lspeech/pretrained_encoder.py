"""The ``ssl_pretrained`` encoder: the student encoder of an ``ssl`` run (weights through
``train.init_from``, prefix ``encoder.inner.``) whose output is a softmax-weighted sum of
chosen blocks, optionally frozen for the first part of fine-tuning."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from speechforge.errors import ConfigError
from speechforge.interfaces import Encoder, Progress
from speechforge.registry import build_component


class SSLPretrainedEncoder(Encoder):
    """Weighted-layer wrapper. Keys: ``encoder`` (the pretrained encoder's config),
    ``layers`` (block indices to mix; default the top two), ``freeze_fraction`` (the share of
    the run, by progress.fraction, during which the inner encoder gets no gradient).

    Output: sum_k softmax(w)_k * layer_k, (B, T', D); the weights ``w`` always train.
    """

    def __init__(self, *, input_dim: int, encoder: Mapping[str, Any], layers: Sequence[int] = (-2, -1),
                 freeze_fraction: float = 0.0) -> None:
        super().__init__()
        if not layers:
            raise ConfigError("encoder.layers: name at least one block to mix")
        if not 0.0 <= freeze_fraction <= 1.0:
            raise ConfigError(f"encoder.freeze_fraction: must be in [0, 1], got {freeze_fraction}")
        self.inner = build_component("encoder", encoder, "encoder.encoder", input_dim=input_dim)
        self.layers, self.freeze_fraction = list(layers), freeze_fraction
        self.layer_weights = nn.Parameter(torch.zeros(len(self.layers)))
        self.output_dim, self.subsampling_rate = self.inner.output_dim, self.inner.subsampling_rate
        self.num_layers = self.inner.num_layers
        self.frozen = freeze_fraction > 0

    def follow(self, progress: Progress) -> None:
        """Freeze the inner encoder while ``progress.fraction < freeze_fraction``."""
        self.frozen = progress.fraction < self.freeze_fraction

    def forward_layers(
        self, feats: Tensor, lengths: Tensor, layers: Sequence[int], chunk_size: int = 0, num_left_chunks: int = -1
    ) -> tuple[Tensor, Tensor, list[Tensor]]:
        """feats (B, T, F) -> the weighted sum (B, T', D), lengths, and the requested blocks."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not (self.frozen and self.training)):
            _, lengths, outputs = self.inner.forward_layers(feats, lengths, [*self.layers, *layers], chunk_size, num_left_chunks)
        mixed_layers = outputs[: len(self.layers)]
        if len({out.shape for out in mixed_layers}) > 1:
            raise ConfigError(f"encoder.layers: blocks {self.layers} have different frame rates; mix blocks after the last strided conv")
        weights = torch.softmax(self.layer_weights, dim=0)
        mixed = sum(w * out for w, out in zip(weights, mixed_layers, strict=True))
        return mixed, lengths, outputs[len(self.layers):]
