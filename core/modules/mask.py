"""Boolean masks (True = keep) for padding and chunked attention."""
from __future__ import annotations

import torch
from torch import Tensor


def padding_mask(lengths: Tensor, max_len: int = 0) -> Tensor:
    """Valid-frame mask.

    Args:
        lengths: (B,) valid lengths.
        max_len: T; the largest length when 0.
    Returns: (B, T) bool, True on valid frames.
    """
    if max_len <= 0:
        max_len = int(lengths.max().item()) if lengths.numel() else 0
    steps = torch.arange(max_len, device=lengths.device)
    return steps.unsqueeze(0) < lengths.unsqueeze(1)


def chunk_attention_mask(
    size: int, chunk_size: int, num_left_chunks: int = -1, device: torch.device | None = None
) -> Tensor:
    """Mask letting frame i attend to its own chunk and ``num_left_chunks`` chunks before it.

    Args:
        size: T.
        chunk_size: frames per chunk (> 0).
        num_left_chunks: left chunks visible; -1 for all.
    Returns: (T, T) bool.
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    chunk = torch.arange(size, device=device) // chunk_size
    query_chunk, key_chunk = chunk.unsqueeze(1), chunk.unsqueeze(0)
    mask = key_chunk <= query_chunk
    if num_left_chunks >= 0:
        mask &= key_chunk >= query_chunk - num_left_chunks
    return mask


def encoder_attention_mask(
    pad_mask: Tensor, chunk_size: int = 0, num_left_chunks: int = -1
) -> Tensor:
    """Self-attention mask of an encoder: key padding, plus chunks when ``chunk_size > 0``.

    Args:
        pad_mask: (B, 1, T) bool.
    Returns: (B, 1, T) without chunking, else (B, T, T).
    """
    if chunk_size <= 0:
        return pad_mask
    chunks = chunk_attention_mask(pad_mask.size(-1), chunk_size, num_left_chunks, pad_mask.device)
    return pad_mask & chunks.unsqueeze(0)  # (B, T, T)
