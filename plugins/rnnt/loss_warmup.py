"""icefall's warm-up of the pruned RNN-T loss weights over the run's progress.

From icefall's transducer recipes (``compute_loss`` in e.g. ``egs/librispeech/ASR/zipformer/train.py``),
with ``s = simple_loss_scale`` and ``f = batch_idx_train / warm_step`` clipped to [0, 1]::

    simple_weight = 1 - f * (1 - s)      # 1.0 at the start, s from warm_step on
    pruned_weight = 0.1 + 0.9 * f        # 0.1 at the start, 1.0 from warm_step on
    loss = simple_weight * simple_loss + pruned_weight * pruned_loss

The pruned loss starts small because its ranges come from a simple loss that has not learnt an
alignment yet. icefall's defaults: s = 0.5, warm_step = 2000.
"""
from __future__ import annotations


def warmup_fraction(step: int, warm_step: int) -> float:
    """``min(step / warm_step, 1)``: how far the warm-up is, from a training step."""
    if warm_step <= 0:
        raise ValueError(f"warm_step must be positive, got {warm_step}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return min(step / warm_step, 1.0)


def transducer_loss_weights(fraction: float, simple_loss_scale: float = 0.5) -> tuple[float, float]:
    """``(simple_weight, pruned_weight)`` at warm-up fraction ``fraction`` in [0, 1] (values above
    1 mean warm-up is over)."""
    if fraction < 0.0:
        raise ValueError(f"warm-up fraction must be >= 0, got {fraction}")
    if not 0.0 <= simple_loss_scale <= 1.0:
        raise ValueError(f"simple_loss_scale must be in [0, 1], got {simple_loss_scale}")
    f = min(fraction, 1.0)
    return 1.0 - f * (1.0 - simple_loss_scale), 0.1 + 0.9 * f
