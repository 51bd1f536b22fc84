"""The selective scan of Mamba (Gu & Dao, 2023) in PyTorch: one step, the plain sequential
reference, and an exact chunked scan taking 2Q + L/Q Python steps instead of L.

For every utterance b, channel d and state n::

    h[t] = exp(delta[t] * A) * h[t-1] + delta[t] * u[t] * B[t]      (state, (B, Din, N))
    y[t] = sum_n C[t, n] * h[t, n]                                   (output, (B, Din))

with A < 0, so every decay exp(delta * A) lies in (0, 1]. Shapes follow mamba-ssm:
u, delta (B, Din, L); A (Din, N); B, C (B, N, L); states (B, Din, N). D skip and SiLU gating
are left to the caller. A frame with delta = 0 leaves the state untouched (padding).

Why the chunked scan looks the way it does: in Mamba-1 the decay differs per channel *and*
state, so the quadratic "segsum" form of Mamba-2 (a (Q, Q) decay matrix per chunk, contracted
by matmuls) would need a (Q, Q) matrix per (b, d, n), Q times the work of the recurrence, with
nothing left for a matmul. The work that cannot be avoided is one update per (b, d, n, t); the
chunked scan does it in large tensor operations instead of one small operation per frame:

1. the state each chunk would end in from a zero start, for all chunks at once, from
   differences of cumulative log-decays (``A * (cum_end - cum_t)`` <= 0: only exps of
   non-positive numbers);
2. the true start state of every chunk, carried across chunks one chunk at a time;
3. the outputs, by the recurrence over the Q positions of a chunk, run for all chunks at once
   from their start states.

Python loops thus run 2Q + L/Q times instead of L, each over (B, L/Q, N, Din) tensors. That
helps where each operation has a fixed launch cost (GPUs); on a CPU, where the sequential
loop's per-frame tensors are already large, both run at the element-wise throughput of PyTorch
and take about as long (docs/plugins/mamba.md has the numbers); there the fused C kernel of
``selective_scan_cpu.py`` takes over. Steps 1 and 3 are shared with the export scan of
``selective_scan_export.py``, which fixes Q and replaces step 2 by a closed form.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def selective_scan_step(
    state: Tensor, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor
) -> tuple[Tensor, Tensor]:
    """One frame of the scan (streaming).

    Args:
        state: (B, Din, N) state after the previous frame.
        u, delta: (B, Din); A: (Din, N); B, C: (B, N).
    Returns: y (B, Din) and the new state (B, Din, N).
    """
    state = torch.exp(delta.unsqueeze(-1) * A) * state + (delta * u).unsqueeze(-1) * B.unsqueeze(1)
    return torch.matmul(state, C.unsqueeze(-1)).squeeze(-1), state


def selective_scan_sequential(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, initial_state: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The reference: :func:`selective_scan_step` frame after frame.

    Args:
        u, delta: (B, Din, L); A: (Din, N); B, C: (B, N, L).
        initial_state: (B, Din, N), zeros when None.
    Returns: y (B, Din, L) and the last state (B, Din, N), float32 for float32 inputs.
    """
    dtype = u.dtype
    u, delta, B, C = u.float(), delta.float(), B.float(), C.float()
    A = A.float()
    state = u.new_zeros(u.size(0), u.size(1), A.size(1)) if initial_state is None else initial_state.float()
    ys = []
    for t in range(u.size(2)):
        y, state = selective_scan_step(state, u[:, :, t], delta[:, :, t], A, B[:, :, t], C[:, :, t])
        ys.append(y)
    y = torch.stack(ys, dim=2) if ys else u.new_zeros(u.shape)  # (B, Din, L)
    return y.to(dtype), state


def selective_scan_chunked(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    initial_state: Tensor | None = None,
    chunk_size: int = 64,
) -> tuple[Tensor, Tensor]:
    """The same scan as :func:`selective_scan_sequential`, chunk-parallel (see the module doc).

    Args:
        u, delta: (B, Din, L); A: (Din, N), negative; B, C: (B, N, L).
        initial_state: (B, Din, N), zeros when None.
        chunk_size: positions per chunk Q (shrunk to L for short inputs).
    Returns: y (B, Din, L) and the last state (B, Din, N).
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    dtype = u.dtype
    batch, dim, length = u.shape
    if length == 0:
        state = u.new_zeros(batch, dim, A.size(1)) if initial_state is None else initial_state
        return u.new_zeros(u.shape), state.float()
    q_len = min(chunk_size, length)
    chunks = math.ceil(length / q_len)
    pad = chunks * q_len - length  # delta = 0 there: the state passes through unchanged

    def by_chunk(t: Tensor) -> Tensor:  # (B, C, L) -> (B, chunks, Q, C)
        t = F.pad(t.float(), (0, pad))
        return t.view(t.size(0), t.size(1), chunks, q_len).permute(0, 2, 3, 1).contiguous()

    At = A.float().t()  # (N, Din): Din innermost, so every op runs long contiguous rows
    dt = by_chunk(delta)  # (B, chunks, Q, Din)
    x = by_chunk(delta * u)  # (B, chunks, Q, Din)
    Bc, Cc = by_chunk(B), by_chunk(C)  # (B, chunks, Q, N)

    # 1. state at each chunk end from a zero start
    local_end = chunk_end_states(dt, x, Bc, At)  # (B, chunks, N, Din)

    # 2. true start states, carried across chunks
    chunk_decay = torch.exp(dt.sum(dim=2, keepdim=True) * At)  # (B, chunks, N, Din)
    start = x.new_zeros(batch, At.size(0), dim) if initial_state is None else initial_state.float().transpose(1, 2)
    starts = [start]  # (B, N, Din) each
    for c in range(chunks - 1):
        starts.append(torch.addcmul(local_end[:, c], chunk_decay[:, c], starts[-1]))

    # 3. outputs, all chunks at once from their start states
    y, state = chunk_outputs(dt, x, Bc, Cc, At, torch.stack(starts, dim=1))
    y = y.reshape(batch, chunks * q_len, dim)[:, :length]  # (B, L, Din)
    return y.transpose(1, 2).to(dtype), state[:, -1].transpose(1, 2)


def chunk_end_states(dt: Tensor, x: Tensor, Bc: Tensor, At: Tensor) -> Tensor:
    """Step 1: the state each chunk ends in from a zero start,
    ``sum_q exp(A * (cum_end - cum_q)) x_q B_q``, one loop over the Q positions of a chunk.

    Args:
        dt, x: (B, chunks, Q, Din) delta and delta * u; Bc: (B, chunks, Q, N); At: (N, Din).
    Returns: (B, chunks, N, Din).
    """
    cum = dt.cumsum(dim=2)  # (B, chunks, Q, Din) cumulative log-decays / A
    to_end = cum[:, :, -1:] - cum  # (B, chunks, Q, Din), >= 0
    local_end = x.new_zeros(x.size(0), x.size(1), At.size(0), At.size(1))  # (B, chunks, N, Din)
    for q in range(dt.size(2)):
        decay = torch.exp(to_end[:, :, q : q + 1] * At)  # (B, chunks, N, Din), in (0, 1]
        local_end = torch.addcmul(local_end, decay, x[:, :, q : q + 1] * Bc[:, :, q, :, None])
    return local_end


def chunk_outputs(dt: Tensor, x: Tensor, Bc: Tensor, Cc: Tensor, At: Tensor, start: Tensor) -> tuple[Tensor, Tensor]:
    """Step 3: the outputs, by the recurrence over the Q positions of a chunk, all chunks at
    once from their start states.

    Args:
        dt, x: (B, chunks, Q, Din); Bc, Cc: (B, chunks, Q, N); At: (N, Din);
        start: (B, chunks, N, Din) the state each chunk starts from.
    Returns: y (B, chunks, Q, Din) and the state each chunk ends in (B, chunks, N, Din).
    """
    state = start
    ys = []
    for q in range(dt.size(2)):
        decay = torch.exp(dt[:, :, q : q + 1] * At)  # (B, chunks, N, Din)
        state = torch.addcmul(decay * state, x[:, :, q : q + 1], Bc[:, :, q, :, None])
        ys.append(torch.matmul(Cc[:, :, q : q + 1], state))  # (B, chunks, 1, Din)
    return torch.cat(ys, dim=2), state
