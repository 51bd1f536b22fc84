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
Python loop over both T and U. Values outside a sequence's boundary never reach its score; the
backward (beta) recursion ignores arcs that leave the boundary, so padding may hold anything.

The gradients of the scores wrt ``px``/``py`` are the arcs' occupation probabilities,
``exp(alpha[from] + arc + beta[to] - score)``; they are computed in the forward, as k2 does,
because the pruned loss needs them to choose its ranges, and the backward only scales them.
"""
from __future__ import annotations

import torch
from torch import Tensor

# A finite stand-in for log(0) (k2's -inf arcs, the skewed lattice's empty corners): sums of
# alpha, arc and beta terms stay finite, so no -inf - -inf turns an occupation into NaN.
_LOG_ZERO = -1.0e30


def make_boundary(frame_lengths: Tensor, symbol_lengths: Tensor) -> Tensor:
    """k2's boundary rows ``(s_begin, t_begin, s_end, t_end) = (0, 0, S_b, T_b)``: (B, 4) int64,
    from frame_lengths (B,) and symbol_lengths (B,)."""
    zeros = torch.zeros_like(frame_lengths, dtype=torch.int64)
    return torch.stack([zeros, zeros, symbol_lengths.to(torch.int64), frame_lengths.to(torch.int64)], dim=1)


def _skew(x: Tensor, num_diagonals: int) -> Tensor:
    """(B, R, C) -> (N, B, R) with ``out[n, b, r] = x[b, r, n - r]`` and log-zero where
    ``n - r`` is outside [0, C): row n is the anti-diagonal s + t = n."""
    B, R, C = x.shape
    n = torch.arange(num_diagonals, device=x.device).view(num_diagonals, 1)
    col = n - torch.arange(R, device=x.device).view(1, R)  # (N, R)
    inside = (col >= 0) & (col < C)
    index = col.clamp(0, C - 1).t().unsqueeze(0).expand(B, R, num_diagonals)  # (B, R, N)
    gathered = x.gather(2, index).permute(2, 0, 1)  # (N, B, R)
    return gathered.masked_fill(~inside.unsqueeze(1), _LOG_ZERO).contiguous()


def _unskew(x: Tensor, columns: int) -> Tensor:
    """Inverse of ``_skew``: (N, B, R) -> (B, R, columns), ``out[b, r, c] = x[r + c, b, r]``."""
    N, B, R = x.shape
    diag = torch.arange(R, device=x.device).view(R, 1) + torch.arange(columns, device=x.device).view(1, columns)
    return x.permute(1, 2, 0).gather(2, diag.unsqueeze(0).expand(B, R, columns))  # (B, R, columns)


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


@torch.no_grad()
def _scores_and_occupations(px: Tensor, py: Tensor, boundary: Tensor, regular: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Forward (alpha) and backward (beta) recursions along anti-diagonals, then every arc's
    occupation ``exp(alpha[from] + arc + beta[to] - score)``. Returns scores (B,),
    px_grad like px, py_grad like py."""
    B, S1, T = py.shape
    S, T1 = S1 - 1, px.size(2)
    N = S1 + T  # diagonals n = s + t in [0, S + T]
    step = 1 if regular else 2  # a symbol arc moves one diagonal (regular) or two (modified)
    # -inf arcs (k2's "no such arc") become log-zero so that no node has two -inf inputs
    px = torch.nn.functional.pad(px.clamp(min=_LOG_ZERO), (0, 0, 0, 1), value=_LOG_ZERO)  # (B, S+1, T1)
    px_skew, py_skew = _skew(px, N), _skew(py.clamp(min=_LOG_ZERO), N)  # (N, B, S+1) each

    alpha = px.new_full((N, B, S1), _LOG_ZERO)
    alpha[0, :, 0] = 0.0
    for n in range(1, N):
        blank = alpha[n - 1] + py_skew[n - 1]  # from (s, t-1)
        alpha[n, :, 0] = blank[:, 0]
        if n >= step:
            torch.logaddexp(alpha[n - step, :, :-1] + px_skew[n - step, :, :-1], blank[:, 1:], out=alpha[n, :, 1:])
        else:
            alpha[n, :, 1:] = blank[:, 1:]
    s_end, t_end = boundary[:, 2], boundary[:, 3]
    batch = torch.arange(B, device=px.device)
    scores = alpha[s_end + t_end, batch, s_end]  # (B,)

    # beta: only arcs whose end lies inside the boundary may carry mass back to a node
    s_idx = torch.arange(S1, device=px.device).view(1, 1, S1)
    n_idx = torch.arange(N, device=px.device).view(N, 1, 1)
    t_of = n_idx - s_idx  # (N, 1, S+1): frame of skewed node (n, s)
    end_s, end_t = s_end.view(1, B, 1), t_end.view(1, B, 1)
    blank_ok = (s_idx <= end_s) & (t_of + 1 <= end_t)
    symbol_ok = (s_idx + 1 <= end_s) & (t_of + (0 if regular else 1) <= end_t)
    px_back = px_skew.masked_fill(~symbol_ok, _LOG_ZERO)
    py_back = py_skew.masked_fill(~blank_ok, _LOG_ZERO)
    beta = px.new_full((N + 2, B, S1 + 1), _LOG_ZERO)  # spare diagonals and column: no arcs there
    beta[s_end + t_end, batch, s_end] = 0.0
    for n in range(N - 1, -1, -1):
        into = torch.logaddexp(beta[n + 1, :, :S1] + py_back[n], beta[n + step, :, 1:] + px_back[n])
        torch.logaddexp(beta[n, :, :S1], into, out=beta[n, :, :S1])  # keeps the terminal's 0
    beta = beta[:, :, :S1]

    total = scores.view(1, B, 1)
    py_occ = (alpha + py_skew + beta[1 : N + 1] - total).exp()  # (N, B, S+1)
    px_occ = (alpha[:, :, :-1] + px_skew[:, :, :-1] + beta[step : N + step, :, 1:] - total).exp()  # (N, B, S)
    py_grad = _unskew(py_occ, T)  # (B, S+1, T)
    px_grad = _unskew(px_occ, T1)  # (B, S, T1)
    return scores, px_grad, py_grad


class _MutualInformation(torch.autograd.Function):
    """Scores in the forward together with their gradients wrt px and py (as k2 computes them),
    so the pruned loss can choose its ranges; the backward only scales those."""

    @staticmethod
    def forward(ctx, px: Tensor, py: Tensor, boundary: Tensor, regular: bool) -> tuple[Tensor, Tensor, Tensor]:
        # float64 inside: an occupation is exp(alpha + arc + beta - score) of terms near the
        # score's size (thousands of nats on long utterances), where float32 leaves ~1e-3 of it
        scores, px_grad, py_grad = _scores_and_occupations(px.detach().double(), py.detach().double(), boundary, regular)
        px_grad, py_grad = px_grad.to(px.dtype), py_grad.to(py.dtype)
        ctx.save_for_backward(px_grad, py_grad)
        ctx.mark_non_differentiable(px_grad, py_grad)
        return scores.to(px.dtype), px_grad, py_grad

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
