"""Mamba encoder block, registered as ``encoder_block`` ``mamba``: a pre-norm residual Mamba
layer (Gu & Dao, 2023) in place of self-attention, optionally followed by a feed-forward
network, with a bidirectional variant for non-causal encoders (as in Vision Mamba / BiMamba:
a second Mamba reads each utterance backwards)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from speechforge.errors import ConfigError
from speechforge.interfaces import BlockCache, EncoderBlock
from speechforge.registry import build_component
from speechforge_plugins.mamba.mamba_mixer import MambaMixer

MERGES = ("sum", "concat")


def reverse_valid_index(pad_mask: Tensor) -> Tensor:
    """Gather index that reverses the valid frames of each utterance in place.

    Built from tensor ops only (sort, gather, scatter), so a graph exporter records it for any
    length: the sort keys are distinct (padded frames keyed after every valid one), so any sort,
    stable or not (ONNX TopK), gives the same order.

    Args:
        pad_mask: (B, T) bool, True = valid.
    Returns: (B, T) long: valid frames map to their mirror among the valid frames, padded
    frames to themselves. The permutation is its own inverse.
    """
    steps = torch.arange(pad_mask.size(1), device=pad_mask.device)  # (T,)
    keys = torch.where(pad_mask, steps, steps + pad_mask.size(1))  # (B, T) valid frames first
    order = torch.argsort(keys, dim=1)  # (B, T) frame of each rank
    count = pad_mask.sum(dim=1, keepdim=True)  # (B, 1)
    mirrored = torch.where(steps < count, count - 1 - steps, steps)  # (B, T) ranks
    return torch.zeros_like(order).scatter(1, order, order.gather(1, mirrored))


class MambaBlock(EncoderBlock):
    """x + Mamba(LN x) [→ x + FFN(LN x)].

    With ``bidirectional``, a forward and a backward Mamba (each with its own weights) read
    the normalised input; the backward one sees the valid frames of each utterance in reverse
    order, so padding never reaches them. Their outputs are summed or concatenated and
    projected back (``merge``). Streaming state keys (causal block): ``"conv"``
    (B, Din, d_conv - 1) and ``"ssm"`` (B, Din, d_state) float32, both of fixed size whatever
    the stream's length; :meth:`initial_state` (or an empty dict) starts a stream.
    """

    def __init__(
        self,
        *,
        d_model: int,
        ffn: Mapping[str, Any],
        dropout: float = 0.1,
        causal: bool = False,
        bidirectional: bool = False,
        merge: str = "sum",
        use_ffn: bool = False,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        chunk_size: int = 64,
        scan: str = "auto",
    ) -> None:
        super().__init__()
        if bidirectional and causal:
            raise ConfigError("bidirectional: a causal encoder (causal: true) cannot read backwards; set it false")
        if merge not in MERGES:
            raise ConfigError(f"merge: must be one of {', '.join(MERGES)}, got {merge!r}")
        mixer = dict(d_model=d_model, d_state=d_state, d_conv=d_conv, expand=expand, dt_rank=dt_rank,
                     chunk_size=chunk_size, scan=scan)  # fmt: skip
        self.norm_mamba = nn.LayerNorm(d_model)
        self.mamba = MambaMixer(**mixer)
        self.mamba_backward = MambaMixer(**mixer) if bidirectional else None
        self.merge_proj = nn.Linear(2 * d_model, d_model) if bidirectional and merge == "concat" else None
        self.norm_ff = nn.LayerNorm(d_model) if use_ffn else None
        self.feed_forward = build_component("ffn", ffn, "ffn", d_model=d_model) if use_ffn else None
        self.dropout = nn.Dropout(dropout)

    def initial_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> BlockCache:
        """Zero conv history and scan state; a bidirectional block cannot stream."""
        if self.mamba_backward is not None:
            raise ConfigError("is bidirectional (reads utterances backwards); streaming needs bidirectional: false")
        conv = torch.zeros(batch_size, self.mamba.d_inner, self.mamba.d_conv - 1, device=device, dtype=dtype)
        ssm = torch.zeros(batch_size, self.mamba.d_inner, self.mamba.d_state, device=device, dtype=torch.float32)
        return {"conv": conv, "ssm": ssm}

    def forward(
        self,
        x: Tensor,
        att_mask: Tensor | None,
        pad_mask: Tensor | None,
        pos_emb: Tensor | None = None,
        cache: BlockCache | None = None,
    ) -> tuple[Tensor, BlockCache | None]:
        """Args:
            x: (B, T, D).
            att_mask: (B, 1 | T, T); unused by the causal block, which never looks ahead; a
                bidirectional block refuses chunk masks (B, T, T), which it cannot honour.
            pad_mask: (B, 1, T) bool, True = valid, or None.
            pos_emb: unused (the scan is order-aware).
            cache: {"conv", "ssm"} state of the previous chunk, {} to start, or None.
        Returns: (B, T, D) and the new state (None when ``cache`` was None).
        """
        valid = None if pad_mask is None else pad_mask[:, 0]  # (B, T)
        h = self.norm_mamba(x)
        new_cache = None
        if self.mamba_backward is None:
            state = None if cache is None else (cache.get("conv"), cache.get("ssm"))
            if state is not None and state[0] is None:
                start = self.initial_state(x.size(0), x.device, x.dtype)
                state = (start["conv"], start["ssm"])
            out, state = self.mamba(h, valid, state)
            if state is not None:
                new_cache = {"conv": state[0], "ssm": state[1]}
        else:
            if cache is not None:
                raise ValueError("a bidirectional mamba block cannot stream; use bidirectional: false")
            if att_mask is not None and att_mask.size(1) > 1:
                raise ValueError(
                    f"a bidirectional mamba block reads whole utterances and cannot honour the "
                    f"chunk mask of shape {tuple(att_mask.shape)}; use bidirectional: false for chunked training"
                )
            out = self._bidirectional(h, valid)
        x = x + self.dropout(out)
        if self.feed_forward is not None:
            x = x + self.dropout(self.feed_forward(self.norm_ff(x)))
        return x, new_cache

    def _bidirectional(self, h: Tensor, valid: Tensor | None) -> Tensor:
        """Forward and backward Mamba over (B, T, D), merged; zero on padded frames."""
        forward, _ = self.mamba(h, valid)
        if valid is None:
            backward, _ = self.mamba_backward(h.flip(1), None)
            backward = backward.flip(1)
        else:
            index = reverse_valid_index(valid).unsqueeze(-1).expand_as(h)  # (B, T, D)
            backward, _ = self.mamba_backward(h.gather(1, index), valid)
            backward = backward.gather(1, index)
        if self.merge_proj is None:
            return forward + backward
        out = self.merge_proj(torch.cat((forward, backward), dim=-1))  # (B, T, D)
        return out if valid is None else out.masked_fill(~valid.unsqueeze(-1), 0.0)
