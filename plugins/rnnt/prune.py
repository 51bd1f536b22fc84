"""Prune ranges of k2's pruned RNN-T: which ``s_range`` consecutive symbol positions the real
joiner is evaluated at on each frame, chosen from the simple loss's arc occupations.

For every frame t the window start s is the argmax over s of the blank occupation summed over
positions s .. s+s_range-1 minus the symbol occupation entering position s (the mass that would
be cut off on the window's lower side). The starts are then made monotone, start at 0, advance by
less than ``s_range`` per frame (by at most 1 for the one-symbol-per-frame topologies) and end on
the last symbols at each sequence's last frame, so that at least one complete path survives.
Rules as in k2 1.23.4's ``get_rnnt_prune_ranges``.
"""
from __future__ import annotations

import torch
from torch import Tensor


def _monotone_lower_bound(x: Tensor) -> Tensor:
    """Largest non-decreasing sequence below x along the last dim: ``out[i] = min(x[i:])``."""
    return torch.flip(torch.cummin(torch.flip(x, dims=(-1,)), dim=-1).values, dims=(-1,))


def adjust_lower_bounds(s_begin: Tensor, max_step: int) -> Tensor:
    """Make window starts s_begin (B, T) non-decreasing, non-negative and with
    ``s_begin[t+1] - s_begin[t] <= max_step - 1``.

    The step bound is a monotonicity bound of ``(max_step - 1) * t - s_begin[t]``, so both
    constraints come from the same reverse running minimum.
    """
    T = s_begin.size(1)
    slope = (max_step - 1) * torch.arange(T, device=s_begin.device)
    s_begin = _monotone_lower_bound(s_begin)
    shifted = _monotone_lower_bound(slope - s_begin).clamp(min=0)
    return slope - shifted


def prune_ranges(px_grad: Tensor, py_grad: Tensor, boundary: Tensor, s_range: int) -> Tensor:
    """Symbol positions kept per frame.

    Args:
        px_grad: (B, S, T+1) [regular] or (B, S, T), d score / d px of the simple loss.
        py_grad: (B, S+1, T), d score / d py.
        boundary: (B, 4) rows ``(0, 0, S_b, T_b)``.
        s_range: positions per frame; more than S keeps all S + 1.

    Returns:
        ranges (B, T, s_range) int64, ``ranges[b, t] = s_begin[b, t] + arange(s_range)``.
    """
    B, S, T1 = px_grad.shape
    T = py_grad.size(2)
    if T1 not in (T, T + 1) or py_grad.shape != (B, S + 1, T) or boundary.shape != (B, 4):
        raise ValueError(
            f"prune_ranges needs px_grad (B, S, T[+1]), py_grad (B, S+1, T), boundary (B, 4); got "
            f"{tuple(px_grad.shape)}, {tuple(py_grad.shape)}, {tuple(boundary.shape)}"
        )
    if S < 1 or T < S:
        raise ValueError(f"pruning needs 1 <= S <= T, got S={S}, T={T}")
    regular = T1 == T + 1
    s_range = min(s_range, S + 1)
    if s_range < (2 if regular else 1):
        raise ValueError(
            f"s_range must be >= {2 if regular else 1} for the {'regular' if regular else 'one-symbol-per-frame'} "
            f"topology, or no path survives pruning; got {s_range}"
        )
    starts = S + 2 - s_range  # window starts 0 .. S + 1 - s_range
    window_blank = py_grad.unfold(1, s_range, 1).sum(dim=-1)  # (B, starts, T)
    entering = torch.nn.functional.pad(px_grad, (0, 0, 1, 0))[:, :starts, :T]  # (B, starts, T)
    s_begin = (window_blank - entering).argmax(dim=1)  # (B, T)

    # from each sequence's last frame on, the window must hold its last symbols
    frames = torch.arange(T, device=px_grad.device).view(1, T)
    before_last = frames < boundary[:, 3].view(B, 1) - 1
    last_start = (boundary[:, 2].view(B, 1) - s_range + 1).clamp(min=0)
    s_begin = torch.where(before_last, s_begin, last_start)
    s_begin = adjust_lower_bounds(s_begin, s_range if regular else 2)
    return s_begin.unsqueeze(-1) + torch.arange(s_range, device=px_grad.device)  # (B, T, s_range)


def gather_pruned(am: Tensor, lm: Tensor, ranges: Tensor) -> tuple[Tensor, Tensor]:
    """The joiner's inputs inside the ranges only (k2's ``do_rnnt_pruning``).

    Args: am (B, T, D_enc), lm (B, S+1, D_pred), ranges (B, T, s_range).
    Returns am_pruned (B, T, s_range, D_enc) (a broadcast view) and lm_pruned
    (B, T, s_range, D_pred), ``lm_pruned[b, t, r] = lm[b, ranges[b, t, r]]``.
    """
    B, T, s_range = ranges.shape
    if am.shape[:2] != (B, T) or lm.size(0) != B:
        raise ValueError(f"ranges {tuple(ranges.shape)} do not fit am {tuple(am.shape)} and lm {tuple(lm.shape)}")
    D = lm.size(2)
    am_pruned = am.unsqueeze(2).expand(B, T, s_range, am.size(2))
    index = ranges.reshape(B, T * s_range, 1).expand(B, T * s_range, D)
    lm_pruned = lm.gather(1, index).view(B, T, s_range, D)
    return am_pruned, lm_pruned
