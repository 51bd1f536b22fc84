"""An encoder whose layers are a table in the config, so S3LSpeech, the ESSL baseline and the
Mamba ablation differ only in configuration.

Rows (``layers:`` list, in order):
    {type: conv1d, channels, kernel, stride}: Conv1d + GELU over time, lengths subsampled.
    {type: projection, dim}: a Linear to ``dim`` channels.
    {type: attention, d_model, heads, ffn}: a pre-norm transformer block (``attention``
        defaults to the FlashAttention plugin's ``flash``).
    {type: mamba, d_model, ...}: the Mamba plugin's block (its keys pass through).
Attention and Mamba rows are the blocks ``forward_layers`` indexes.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from speechforge.errors import ConfigError
from speechforge.interfaces import Encoder
from speechforge.registry import build_component

ROW_TYPES = ("conv1d", "projection", "attention", "mamba")


class Conv1dLayer(nn.Module):
    """Conv1d + GELU over time with 'same'-style left/right padding. (B, T, C) -> (B, T', C')."""

    def __init__(self, in_channels: int, channels: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, channels, kernel, stride, padding=kernel // 2)
        self.activation = nn.GELU()

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        conv = self.conv
        out = self.activation(conv(x.transpose(1, 2))).transpose(1, 2)
        pad, kernel, stride = conv.padding[0], conv.kernel_size[0], conv.stride[0]
        lengths = torch.div(lengths + 2 * pad - kernel, stride, rounding_mode="floor") + 1
        return out, lengths.clamp(min=1, max=out.size(1))


class LayerTableEncoder(Encoder):
    """Encoder built from a table of rows (module docstring). ``subsampling_rate`` is the
    product of the conv strides; ``output_dim`` the channels of the last row."""

    def __init__(self, *, input_dim: int, layers: Sequence[Mapping[str, Any]], dropout: float = 0.1) -> None:
        super().__init__()
        if not layers:
            raise ConfigError("encoder.layers: needs at least one row")
        self.stages = nn.ModuleList()
        self.stage_kinds: list[str] = []  # the row type of each stage (inference transforms may swap its class)
        self.block_positions: list[int] = []  # stage index of each attention/mamba block
        dim, rate = input_dim, 1
        for i, row in enumerate(layers):
            row = dict(row)
            kind = row.pop("type", None)
            where = f"encoder.layers[{i}]"
            try:
                if kind == "conv1d":
                    stage: nn.Module = Conv1dLayer(dim, row["channels"], row["kernel"], row.get("stride", 1))
                    dim, rate = row["channels"], rate * row.get("stride", 1)
                elif kind == "projection":
                    stage, dim = nn.Linear(dim, row["dim"]), row["dim"]
                elif kind in ("attention", "mamba"):
                    if row["d_model"] != dim:
                        raise ConfigError(f"{where}.d_model: {row['d_model']} but the row before gives {dim} channels; add a projection row")
                    if kind == "attention":
                        block = {"type": "transformer", "heads": row["heads"], "ffn": row["ffn"],
                                 "attention": row.get("attention", {"type": "flash"}), "dropout": dropout}
                    else:
                        block = {"type": "mamba", "dropout": dropout, "ffn": {"type": "dense", "hidden": 4 * dim}, **row}
                        block.pop("d_model")
                    stage = build_component("encoder_block", block, where, d_model=dim)
                    self.block_positions.append(len(self.stages))
                else:
                    raise ConfigError(f"{where}.type: must be one of {', '.join(ROW_TYPES)}, got {kind!r}")
            except KeyError as missing:
                raise ConfigError(f"{where}.{missing.args[0]}: missing") from None
            self.stages.append(stage)
            self.stage_kinds.append(kind)
        self.norm = nn.LayerNorm(dim)
        self.output_dim, self.subsampling_rate, self.num_layers = dim, rate, len(self.block_positions)

    def forward_layers(
        self, feats: Tensor, lengths: Tensor, layers: Sequence[int], chunk_size: int = 0, num_left_chunks: int = -1
    ) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Full-context encoding (the table has no streaming mode). feats (B, T, F) ->
        (B, T', D), lengths, and the outputs of the requested blocks (B, T', D)."""
        chunk_size, _ = self.resolve_chunk(chunk_size, num_left_chunks, feats.size(1))
        if chunk_size > 0:
            raise ConfigError("encoder: the layer_table encoder has no chunked mode; use chunk_size -1 or 0")
        wanted = []
        for index in layers:
            if not -self.num_layers <= index < self.num_layers:
                raise ConfigError(f"layers: index {index} out of range for {self.num_layers} blocks")
            wanted.append(index % self.num_layers)
        outputs: dict[int, Tensor] = {}
        x = feats
        for position, (kind, stage) in enumerate(zip(self.stage_kinds, self.stages, strict=True)):
            if kind == "conv1d":
                x, lengths = stage(x, lengths)
            elif kind == "projection":
                x = stage(x)
            else:
                valid = (torch.arange(x.size(1), device=x.device) < lengths[:, None]).unsqueeze(1)  # (B, 1, T)
                x, _ = stage(x, valid, valid)
                outputs[self.block_positions.index(position)] = x
        return self.norm(x), lengths, [outputs[i] for i in wanted]
