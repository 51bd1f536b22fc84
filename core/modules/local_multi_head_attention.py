"""Local (sliding-window) self-attention, registered as ``attention`` ``local_mha``: each frame
attends to ``left_context`` frames before it and ``right_context`` after it (the USM
Conformer's 129 / 128), computed block by block so that time and memory grow linearly with
the length instead of quadratically.

Same layers (``linear_qkv``, ``linear_out``) and state-dict keys as ``mha``, so a checkpoint
moves between the two; equal to ``mha`` under the banded mask.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from speechforge.errors import ConfigError
from speechforge.modules.multi_head_attention import MultiHeadAttention


class LocalMultiHeadAttention(MultiHeadAttention):
    """Queries are cut into blocks of ``block_size`` frames (default ``max(left_context,
    right_context, 1)``); block b attends to the keys from its first frame minus
    ``left_context`` to its last frame plus ``right_context``, a window of ``block_size +
    left_context + right_context`` keys, and a band mask keeps each query's own window. The
    caller's mask (padding (B, 1, T) or full (B, T, T)) is applied on top.

    Self-attention only; it keeps no streaming cache (chunked streaming limits the context
    with ``num_left_chunks`` instead).
    """

    def __init__(
        self,
        *,
        d_model: int,
        heads: int,
        left_context: int = 129,
        right_context: int = 128,
        block_size: int = 0,
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__(d_model=d_model, heads=heads, dropout=dropout, bias=bias, use_sdpa=False)
        if left_context < 0 or right_context < 0 or block_size < 0:
            raise ConfigError(
                f"attention: left_context, right_context and block_size must be >= 0, got "
                f"{left_context}, {right_context}, {block_size}"
            )
        self.left, self.right = left_context, right_context
        self.block = block_size or max(left_context, right_context, 1)

    def initial_cache(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        raise ConfigError("attention local_mha keeps no streaming cache, so it cannot stream; use mha with num_left_chunks")

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None,
        pos_emb: Tensor | None = None,
        cache: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        if cache is not None or not (query is key and key is value):
            raise ConfigError("attention local_mha is self-attention without a streaming cache")
        B, T, _ = query.shape
        W, L, R = self.block, self.left, self.right
        blocks = -(-T // W)
        padded = blocks * W
        q, k, v = (self.split_heads(t) for t in self.project(query, key, value))  # (B, H, T, dk)
        q = F.pad(q, (0, 0, 0, padded - T)).view(B, self.heads, blocks, W, self.d_head)
        windows = W + L + R
        k, v = (  # (B, H, blocks, windows, dk): block b's keys start at frame b * W - L
            F.pad(t, (0, 0, L, padded - T + R)).unfold(2, windows, W).transpose(-1, -2) for t in (k, v)
        )
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.d_head)  # (B, H, blocks, W, windows)
        keep = self.window_mask(mask, B, T, blocks, query.device)  # (B, 1 | blocks, W, windows)
        empty = ~keep.any(dim=-1, keepdim=True)  # (B, blocks, W, 1)
        scores = scores.masked_fill(~(keep | empty).unsqueeze(1), float("-inf"))
        probs = F.dropout(torch.softmax(scores, dim=-1), self.dropout_p, self.training)
        out = torch.matmul(probs, v).masked_fill(empty.unsqueeze(1), 0.0)  # (B, H, blocks, W, dk)
        out = out.reshape(B, self.heads, padded, self.d_head)[:, :, :T].transpose(1, 2).reshape(B, T, -1)
        out = self.linear_out(out)  # (B, T, D)
        return out.masked_fill(empty.reshape(B, padded, 1)[:, :T], 0.0), None

    def window_mask(self, mask: Tensor | None, B: int, T: int, blocks: int, device: torch.device) -> Tensor:
        """Which window keys each query keeps: inside its band, a real frame, and allowed by
        ``mask``. Returns (B, blocks, W, windows) bool."""
        W, L, R = self.block, self.left, self.right
        windows = W + L + R
        rows = torch.arange(W, device=device).view(W, 1)
        cols = torch.arange(windows, device=device).view(1, windows)
        band = (cols >= rows) & (cols <= rows + L + R)  # (W, windows): key - query in [-L, R]
        positions = torch.arange(blocks, device=device).view(blocks, 1, 1) * W + cols - L  # (blocks, 1, windows)
        inside = (positions >= 0) & (positions < T)
        keep = (band & inside).unsqueeze(0)  # (1, blocks, W, windows)
        if mask is None:
            return keep.expand(B, -1, -1, -1)
        index = positions.clamp(0, T - 1)  # (blocks, 1, windows)
        if mask.size(1) == 1:  # key padding (B, 1, T)
            allowed = mask[:, 0][:, index.view(-1)].view(B, blocks, 1, windows)
        else:  # full (B, T, T): query rows in blocks, key columns of each block's window
            full = F.pad(mask, (0, 0, 0, blocks * W - T)).view(B, blocks, W, T)
            allowed = full.gather(3, index.expand(blocks, W, windows).unsqueeze(0).expand(B, -1, -1, -1))
        return keep & allowed
