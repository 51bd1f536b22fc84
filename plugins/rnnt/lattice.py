"""The transducer lattice's forward recursion (k2's ``mutual_information_recursion``), in PyTorch.

Over the (S+1) x (T+1) lattice of (symbols emitted, frames consumed), with ``px[b, s, t]`` the
log-score of emitting symbol s+1 from node (s, t) and ``py[b, s, t]`` that of the blank that
moves (s, t) to (s, t+1):

- regular topology, ``px`` (B, S, T+1): ``p[s, t] = logaddexp(p[s-1, t] + px[s-1, t],
  p[s, t-1] + py[s, t-1])`` (a symbol keeps the frame);
- modified / constrained topology, ``px`` (B, S, T): ``p[s, t] = logaddexp(p[s-1, t-1] +
  px[s-1, t-1], p[s, t-1] + py[s, t-1])`` (a symbol also consumes the frame).

``p[0, 0] = 0`` and the score of sequence b is ``p[S_b, T_b]`` read at its boundary row
``(0, 0, S_b, T_b)``. Node (s, t) only depends on nodes with smaller s + t, so the recursion runs
over the S + T + 1 anti-diagonals, each one vectorised over the batch and the diagonal: never a
Python loop over both T and U. Values outside a sequence's boundary never reach its score, so
padding needs no masking.

The gradients of the scores wrt ``px``/``py`` (the lattice's arc occupation probabilities) are
computed in the forward, as k2 does, because the pruned loss needs them to choose its ranges;
the backward then only scales them.
"""
from __future__ import annotations

import torch
from torch import Tensor

# A finite stand-in for log(0): logaddexp(-inf, -inf) has a NaN gradient, which would leak into
# the occupation probabilities through the masked corners of the skewed lattice.
_LOG_ZERO = -1.0e30


def make_boundary(frame_lengths: Tensor, symbol_lengths: Tensor) -> Tensor:
    """k2's boundary rows ``(s_begin, t_begin, s_end, t_end) = (0, 0, S_b, T_b)``: (B, 4) int64,
    from frame_lengths (B,) and symbol_lengths (B,)."""
    zeros = torch.zeros_like(frame_lengths, dtype=torch.int64)
    return torch.stack([zeros, zeros, symbol_lengths.to(torch.int64), frame_lengths.to(torch.int64)], dim=1)


def _skew(x: Tensor, num_diagonals: int) -> Tensor:
    """(B, R, C) -> (B, num_diagonals, R) with ``out[b, n, r] = x[b, r, n - r]`` and log-zero
    where ``n - r`` is outside [0, C)."""
    B, R, C = x.shape
    n = torch.arange(num_diagonals, device=x.device).view(num_diagonals, 1)
    col = n - torch.arange(R, device=x.device).view(1, R)  # (N, R)
    inside = (col >= 0) & (col < C)
    index = col.clamp(0, C - 1).view(1, num_diagonals, R).expand(B, -1, -1)
    gathered = x.gather(2, index.transpose(1, 2)).transpose(1, 2)  # (B, N, R)
    return gathered.masked_fill(~inside, _LOG_ZERO)


def _check(px: Tensor, py: Tensor, boundary: Tensor | None) -> tuple[bool, Tensor]:
    B, S1, T = py.shape
    S = S1 - 1
    if px.shape[:2] != (B, S) or px.size(2) not in (T, T + 1):
        raise ValueError(f"px must be (B, S, T) or (B, S, T+1) for py {tuple(py.shape)}, got {tuple(px.shape)}")
    if boundary is None:
        boundary = torch.tensor([0, 0, S, T], device=px.device).expand(B, 4)
    if boundary.shape != (B, 4):
        raise ValueError(f"boundary must be (B, 4) = ({B}, 4), got {tuple(boundary.shape)}")
    if bool((boundary[:, :2] != 0).any()):
        raise ValueError(f"only boundaries that start at (0, 0) are supported, got {boundary[:, :2].tolist()}")
    if bool((boundary[:, 2] > S).any()) or bool((boundary[:, 3] > T).any()):
        raise ValueError(f"boundary ends {boundary[:, 2:].tolist()} exceed the lattice S={S}, T={T}")
    return px.size(2) == T + 1, boundary


def _forward_scores(px: Tensor, py: Tensor, boundary: Tensor, regular: bool) -> Tensor:
    """The recursion itself, differentiable by autograd. Returns scores (B,)."""
    B, S1, T = py.shape
    N = S1 + T  # diagonals n = s + t in [0, S + T]
    # -inf arcs (k2's "no such arc") become log-zero so that no node has two -inf inputs
    px, py = px.clamp(min=_LOG_ZERO), py.clamp(min=_LOG_ZERO)
    px_skew = _skew(torch.nn.functional.pad(px, (0, 0, 0, 1), value=_LOG_ZERO), N)  # (B, N, S+1)
    py_skew = _skew(py, N)  # (B, N, S+1)
    edge = px.new_full((B, 1), _LOG_ZERO)
    first = px.new_full((B, S1), _LOG_ZERO)
    first[:, 0] = 0.0
    diagonals = [first]
    for n in range(1, N):
        # symbol arc into (s, t) from (s-1, t) [regular] or (s-1, t-1) [modified], shifted by one s
        src = n - 1 if regular else n - 2
        if src >= 0:
            emit = diagonals[src][:, :-1] + px_skew[:, src, :-1]  # (B, S)
            emit = torch.cat([edge, emit], dim=1)  # (B, S+1)
        else:
            emit = px.new_full((B, S1), _LOG_ZERO)
        blank = diagonals[n - 1] + py_skew[:, n - 1]  # (B, S+1)
        diagonals.append(torch.logaddexp(emit, blank))
    p_skew = torch.stack(diagonals, dim=1)  # (B, N, S+1)
    s_end, t_end = boundary[:, 2], boundary[:, 3]
    return p_skew[torch.arange(B, device=px.device), s_end + t_end, s_end]


class _MutualInformation(torch.autograd.Function):
    """Scores in the forward together with their gradients wrt px and py; the backward scales
    those by the incoming gradient, so the recursion is differentiated once."""

    @staticmethod
    def forward(ctx, px: Tensor, py: Tensor, boundary: Tensor, regular: bool) -> tuple[Tensor, Tensor, Tensor]:
        with torch.enable_grad():
            px_leaf = px.detach().requires_grad_(True)
            py_leaf = py.detach().requires_grad_(True)
            scores = _forward_scores(px_leaf, py_leaf, boundary, regular)
            px_grad, py_grad = torch.autograd.grad(scores.sum(), (px_leaf, py_leaf))
        ctx.save_for_backward(px_grad, py_grad)
        ctx.mark_non_differentiable(px_grad, py_grad)
        return scores.detach(), px_grad, py_grad

    @staticmethod
    def backward(ctx, scores_grad: Tensor, _px_grad_grad: Tensor, _py_grad_grad: Tensor):
        px_grad, py_grad = ctx.saved_tensors
        scale = scores_grad.view(-1, 1, 1)
        return px_grad * scale, py_grad * scale, None, None


def mutual_information_recursion(
    px: Tensor, py: Tensor, boundary: Tensor | None = None
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Total log-score of each sequence's lattice and its gradients wrt px and py.

    Args:
        px: (B, S, T+1) for the regular topology, (B, S, T) for modified/constrained.
        py: (B, S+1, T).
        boundary: (B, 4) int64 rows ``(0, 0, S_b, T_b)``; None means the whole lattice.

    Returns:
        scores (B,) (differentiable wrt px and py) and ``(px_grad, py_grad)`` shaped like px and
        py: d scores.sum() / d px, d scores.sum() / d py (k2's ``return_grad=True``).
    """
    regular, boundary = _check(px, py, boundary)
    scores, px_grad, py_grad = _MutualInformation.apply(px, py, boundary, regular)
    return scores, (px_grad, py_grad)
