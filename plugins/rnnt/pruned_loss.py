"""The pruned transducer loss (k2's ``rnnt_loss_pruned``): the real joiner's logits, computed only
at the ``s_range`` symbol positions of each frame (``prune.prune_ranges``), scored on the
(S+1) x (T+1) lattice with every arc outside the ranges set to -inf.

The joiner therefore runs on (B, T, s_range, C) instead of (B, T, S+1, C): with s_range 5 and
S 60 that is 12x fewer logits, which is where the pruned loss's time and memory go.
"""
from __future__ import annotations

import torch
from torch import Tensor

from speechforge_plugins.rnnt.lattice import mutual_information_recursion
from speechforge_plugins.rnnt.simple_loss import add_delay_penalty, apply_topology, check_rnnt_type, reduce_loss


def _scatter_to_lattice(scores: Tensor, ranges: Tensor, positions: int) -> Tensor:
    """(B, T, s_range) scores at ``ranges`` (values <= S) -> (B, positions, T) lattice rows, -inf
    elsewhere. One spare column takes the symbol score at position S, which has no symbol arc."""
    B, T, _ = scores.shape
    out = scores.new_full((B, T, positions + 1), float("-inf"))
    out = out.scatter(2, ranges, scores)[:, :, :positions]  # (B, T, positions)
    return out.transpose(1, 2)


def pruned_logprobs(
    logits: Tensor, symbols: Tensor, ranges: Tensor, blank: int, boundary: Tensor | None, rnnt_type: str = "regular"
) -> tuple[Tensor, Tensor]:
    """Lattice scores from pruned logits (k2's ``get_rnnt_logprobs_pruned``).

    Args: logits (B, T, s_range, C) joiner output inside the ranges, symbols (B, S),
    ranges (B, T, s_range), boundary (B, 4) or None.
    Returns px (B, S, T+1) [regular] or (B, S, T), py (B, S+1, T); -inf outside the ranges.
    """
    check_rnnt_type(rnnt_type)
    B, T, s_range, C = logits.shape
    S = symbols.size(1)
    if ranges.shape != (B, T, s_range) or symbols.size(0) != B:
        raise ValueError(f"ranges {tuple(ranges.shape)} and symbols {tuple(symbols.shape)} do not fit logits {tuple(logits.shape)}")
    if S < 1 or T < S:
        raise ValueError(f"the pruned RNN-T lattice needs 1 <= S <= T, got S={S}, T={T}")
    normalizers = torch.logsumexp(logits, dim=3)  # (B, T, s_range)
    with_blank = torch.nn.functional.pad(symbols, (0, 1), value=blank)  # (B, S+1)
    window_symbols = with_blank.unsqueeze(1).expand(B, T, S + 1).gather(2, ranges)  # (B, T, s_range)
    symbol_scores = logits.gather(3, window_symbols.unsqueeze(-1)).squeeze(-1) - normalizers
    blank_scores = logits[..., blank] - normalizers  # (B, T, s_range)
    px = _scatter_to_lattice(symbol_scores, ranges, S)  # (B, S, T)
    py = _scatter_to_lattice(blank_scores, ranges, S + 1)  # (B, S+1, T)
    if rnnt_type == "regular":
        px = torch.nn.functional.pad(px, (0, 1), value=float("-inf"))  # (B, S, T+1)
    return apply_topology(px, py, boundary, rnnt_type), py


def pruned_rnnt_loss(
    logits: Tensor,
    symbols: Tensor,
    ranges: Tensor,
    blank: int,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    """The pruned loss. logits (B, T, s_range, C), symbols (B, S), ranges (B, T, s_range),
    boundary (B, 4) ``(0, 0, S_b, T_b)``. Returns (B,) for 'none', else a scalar."""
    px, py = pruned_logprobs(logits, symbols, ranges, blank, boundary, rnnt_type)
    px = add_delay_penalty(px, boundary, rnnt_type, delay_penalty)
    scores, _ = mutual_information_recursion(px, py, boundary)
    return reduce_loss(scores, reduction)
