"""Backend ``k2``: the pruned RNN-T primitives through the real k2 package (``import k2``), with
the same signatures as the native ``simple_loss`` / ``prune`` / ``pruned_loss`` functions.

k2 is optional (it pins its own torch, so it is not in the project's environment): these
functions import it on first call and raise ``ImportError`` with the fix when it is missing.
The native implementation is checked against fixtures made by k2 1.23.4 instead
(``tools/make_rnnt_fixtures.sh``).
"""
from __future__ import annotations

import importlib.util
from types import ModuleType

from torch import Tensor


def k2_available() -> bool:
    """Whether ``import k2`` would find the package."""
    return importlib.util.find_spec("k2") is not None


def _k2() -> ModuleType:
    if not k2_available():
        raise ImportError(
            "the rnnt loss backend 'k2' needs the k2 package (pip install k2, built for this torch); "
            "backend 'native' computes the same losses without it"
        )
    import k2

    return k2


def k2_simple_rnnt_loss(
    lm: Tensor,
    am: Tensor,
    symbols: Tensor,
    blank: int,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    lm_only_scale: float = 0.0,
    am_only_scale: float = 0.0,
    reduction: str = "mean",
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """``k2.rnnt_loss_simple`` (both scales 0) or ``k2.rnnt_loss_smoothed``, with return_grad."""
    k2 = _k2()
    common = dict(
        symbols=symbols, termination_symbol=blank, boundary=boundary, rnnt_type=rnnt_type,
        delay_penalty=delay_penalty, reduction=reduction, return_grad=True,
    )
    if lm_only_scale == 0.0 and am_only_scale == 0.0:
        return k2.rnnt_loss_simple(lm=lm, am=am, **common)
    return k2.rnnt_loss_smoothed(lm=lm, am=am, lm_only_scale=lm_only_scale, am_only_scale=am_only_scale, **common)


def k2_prune_ranges(px_grad: Tensor, py_grad: Tensor, boundary: Tensor, s_range: int) -> Tensor:
    """``k2.get_rnnt_prune_ranges``: (B, T, s_range)."""
    return _k2().get_rnnt_prune_ranges(px_grad=px_grad, py_grad=py_grad, boundary=boundary, s_range=s_range)


def k2_gather_pruned(am: Tensor, lm: Tensor, ranges: Tensor) -> tuple[Tensor, Tensor]:
    """``k2.do_rnnt_pruning``: am and lm at the ranges, each (B, T, s_range, D)."""
    return _k2().do_rnnt_pruning(am=am, lm=lm, ranges=ranges)


def k2_pruned_rnnt_loss(
    logits: Tensor,
    symbols: Tensor,
    ranges: Tensor,
    blank: int,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    """``k2.rnnt_loss_pruned``."""
    return _k2().rnnt_loss_pruned(
        logits=logits, symbols=symbols, ranges=ranges, termination_symbol=blank, boundary=boundary,
        rnnt_type=rnnt_type, delay_penalty=delay_penalty, reduction=reduction,
    )
