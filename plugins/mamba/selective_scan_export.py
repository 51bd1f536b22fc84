"""The selective scan in a form a graph exporter records for every length: the chunked scan of
:mod:`selective_scan` with a fixed chunk size and no Python loop whose trip count depends on
the number of frames.

The chunked scan has three steps (see :mod:`selective_scan`). Steps 1 and 3 loop over the Q
positions of a chunk; with Q fixed (the input padded up to whole chunks with delta = 0, which
leaves the state alone) the tracer unrolls them into 2Q steps that hold for any length. Step 2
carries the start states across chunks, a loop over L / Q chunks; here it is a closed form over
all chunk pairs at once. With T_c the chunk totals of delta, S_c = T_0 + ... + T_c and e_c the
state chunk c ends in from a zero start (step 1)::

    start_c = exp(A * S_{c-1}) * h0 + sum_{c' < c} exp(A * (S_{c-1} - S_{c'})) * e_{c'}

For c' < c the exponent ``A * (S_{c-1} - S_{c'})`` is <= 0, so only exps of non-positive
numbers are taken (stable for any decay); the pairs c' >= c are masked out. It costs
B x C^2 x N x Din memory for C = L / Q chunks.

Why Q = 32 (:data:`EXPORT_CHUNK`): the graph holds 2Q unrolled steps per Mamba layer, and the
closed form's C^2 N Din = (L / Q)^2 N Din numbers stay below the L N Din of all per-frame states
while L <= Q^2 = 1024 frames (41 s at 40 ms frames); Q = 16 would halve the graph but reach that
size at 256 frames, Q = 64 double it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from speechforge_plugins.mamba.selective_scan import chunk_end_states, chunk_outputs

EXPORT_CHUNK = 32


def selective_scan_export(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    initial_state: Tensor | None = None,
    chunk_size: int = EXPORT_CHUNK,
) -> tuple[Tensor, Tensor]:
    """The same scan as :func:`~speechforge_plugins.mamba.selective_scan.selective_scan_sequential`,
    loop-free over chunks (see the module doc).

    Args:
        u, delta: (B, Din, L), L >= 1; A: (Din, N), negative; B, C: (B, N, L).
        initial_state: (B, Din, N), zeros when None.
        chunk_size: positions per chunk Q, fixed whatever L (the graph unrolls 2Q steps).
    Returns: y (B, Din, L) and the last state (B, Din, N), float32.
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    dtype = u.dtype
    length = u.size(2)  # symbolic under the tracer
    padded = (length + chunk_size - 1) // chunk_size * chunk_size  # whole chunks, at least one

    def by_chunk(t: Tensor) -> Tensor:  # (B, C, L) -> (B, chunks, Q, C), padded with zeros
        t = F.pad(t.float(), (0, chunk_size))[:, :, :padded]
        return t.reshape(t.size(0), t.size(1), -1, chunk_size).permute(0, 2, 3, 1)

    At = A.float().t()  # (N, Din)
    dt = by_chunk(delta)  # (B, chunks, Q, Din)
    x = by_chunk(delta * u)  # (B, chunks, Q, Din)
    Bc, Cc = by_chunk(B), by_chunk(C)  # (B, chunks, Q, N)

    local_end = chunk_end_states(dt, x, Bc, At)  # (B, chunks, N, Din)
    start = carried_starts(dt.sum(dim=2), local_end, At, initial_state)  # (B, chunks, N, Din)
    y, state = chunk_outputs(dt, x, Bc, Cc, At, start)  # (B, chunks, Q, Din), (B, chunks, N, Din)
    y = y.reshape(y.size(0), -1, y.size(3))[:, :length]  # (B, L, Din)
    return y.transpose(1, 2).to(dtype), state[:, -1].transpose(1, 2)


def carried_starts(total: Tensor, local_end: Tensor, At: Tensor, initial_state: Tensor | None) -> Tensor:
    """Step 2 in closed form: the state every chunk starts from.

    Args:
        total: (B, chunks, Din) each chunk's sum of delta.
        local_end: (B, chunks, N, Din) the state each chunk ends in from a zero start.
        At: (N, Din) A transposed; initial_state: (B, Din, N) or None (zeros).
    Returns: (B, chunks, N, Din).
    """
    before = total.cumsum(dim=1) - total  # (B, chunks, Din) S_{c-1}, 0 for the first chunk
    after = before + total  # (B, chunks, Din) S_c
    gap = before.unsqueeze(2) - after.unsqueeze(1)  # (B, c, c', Din) S_{c-1} - S_{c'}, >= 0 for c' < c
    chunk = torch.arange(total.size(1), device=total.device)
    earlier = (chunk.unsqueeze(1) > chunk.unsqueeze(0)).unsqueeze(-1).unsqueeze(-1)  # (c, c', 1, 1)
    decay = torch.exp(gap.clamp(min=0.0).unsqueeze(3) * At)  # (B, c, c', N, Din), in (0, 1]
    start = (decay * earlier * local_end.unsqueeze(1)).sum(dim=2)  # (B, chunks, N, Din)
    if initial_state is None:
        return start
    h0 = initial_state.float().transpose(1, 2).unsqueeze(1)  # (B, 1, N, Din)
    return start + torch.exp(before.unsqueeze(2) * At) * h0
