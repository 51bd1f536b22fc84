"""k2's pruned RNN-T recipe end to end (as icefall's transducer models run it): the simple loss
on the trivial joiner's projections, prune ranges from its occupations, the real joiner on the
gathered (B, T, s_range, D) inputs only, the pruned loss on those logits.

``backend='native'`` uses this plugin's PyTorch implementation, ``backend='k2'`` the real k2
(``k2_backend``); both take the same arguments and return the same ``PrunedLosses``.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor

from speechforge_plugins.rnnt import k2_backend
from speechforge_plugins.rnnt.prune import gather_pruned, prune_ranges
from speechforge_plugins.rnnt.pruned_loss import pruned_rnnt_loss
from speechforge_plugins.rnnt.simple_loss import simple_rnnt_loss

BACKENDS = ("native", "k2")


class PrunedLosses(NamedTuple):
    """The two parts, each (B,) for reduction 'none' else a scalar, and the ranges used
    (B, T, s_range); icefall logs both parts and weights them with ``loss_warmup``."""

    simple: Tensor
    pruned: Tensor
    ranges: Tensor


def pruned_transducer_loss(
    simple_am: Tensor,
    simple_lm: Tensor,
    joiner_am: Tensor,
    joiner_lm: Tensor,
    joiner: Callable[[Tensor, Tensor], Tensor],
    symbols: Tensor,
    boundary: Tensor,
    *,
    s_range: int = 5,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    lm_only_scale: float = 0.25,
    am_only_scale: float = 0.0,
    blank: int = 0,
    reduction: str = "sum",
    backend: str = "native",
) -> PrunedLosses:
    """Both losses of one padded batch.

    Args:
        simple_am: (B, T, V) encoder output through the simple loss's vocabulary projection.
        simple_lm: (B, S+1, V) predictor output (blank-prefixed targets) through its projection.
        joiner_am: (B, T, J) encoder output through the joiner's encoder projection.
        joiner_lm: (B, S+1, J) predictor output through the joiner's predictor projection.
        joiner: maps the gathered (B, T, s_range, J) pair to logits (B, T, s_range, V).
        symbols: (B, S) targets; boundary: (B, 4) rows ``(0, 0, S_b, T_b)``.
        Defaults follow icefall (lm_only_scale 0.25, am_only_scale 0, s_range 5, sum).
    """
    if backend == "native":
        simple_fn, ranges_fn, gather_fn, pruned_fn = simple_rnnt_loss, prune_ranges, gather_pruned, pruned_rnnt_loss
    elif backend == "k2":
        simple_fn, ranges_fn = k2_backend.k2_simple_rnnt_loss, k2_backend.k2_prune_ranges
        gather_fn, pruned_fn = k2_backend.k2_gather_pruned, k2_backend.k2_pruned_rnnt_loss
    else:
        raise ValueError(f"pruned_rnnt backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    simple, (px_grad, py_grad) = simple_fn(
        simple_lm.float(), simple_am.float(), symbols, blank, boundary, rnnt_type, delay_penalty,
        lm_only_scale, am_only_scale, reduction,
    )
    with torch.no_grad():
        ranges = ranges_fn(px_grad, py_grad, boundary, s_range)
    am_pruned, lm_pruned = gather_fn(joiner_am, joiner_lm, ranges)
    logits = joiner(am_pruned, lm_pruned)  # (B, T, s_range, V)
    pruned = pruned_fn(logits.float(), symbols, ranges, blank, boundary, rnnt_type, delay_penalty, reduction)
    return PrunedLosses(simple=simple, pruned=pruned, ranges=ranges)
