"""The full transducer loss (Graves, 2012) over the joiner's logits on every (t, u).

Backends:

- ``native``: log-softmax over the vocabulary, then the blank and label log-probabilities become
  the lattice's py / px and ``lattice.mutual_information_recursion`` runs the forward recursion
  along anti-diagonals (regular topology: a label keeps the frame, the last blank ends it);
- ``torchaudio``: ``torchaudio.functional.rnnt_loss`` (fused C++ kernel, gradients computed
  in the forward).

Both give ``-log P(y | x)`` per sequence and, on padded batches, ignore frames past
``logit_lengths`` and labels past ``target_lengths``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from speechforge_plugins.rnnt.lattice import make_boundary, mutual_information_recursion
from speechforge_plugins.rnnt.simple_loss import mask_past_end, reduce_loss

BACKENDS = ("native", "torchaudio")


def _check(logits: Tensor, targets: Tensor, logit_lengths: Tensor, target_lengths: Tensor) -> None:
    if logits.dim() != 4:
        raise ValueError(f"logits must be (B, T, U+1, V), got {tuple(logits.shape)}")
    B, T, U1, _ = logits.shape
    if targets.shape != (B, U1 - 1):
        raise ValueError(f"targets must be (B, U) = ({B}, {U1 - 1}) for logits {tuple(logits.shape)}, got {tuple(targets.shape)}")
    if logit_lengths.shape != (B,) or target_lengths.shape != (B,):
        raise ValueError(f"lengths must be (B,) = ({B},), got {tuple(logit_lengths.shape)} and {tuple(target_lengths.shape)}")
    if bool((logit_lengths > T).any()) or bool((logit_lengths < 1).any()):
        raise ValueError(f"logit_lengths must be in [1, {T}], got {logit_lengths.tolist()}")
    if bool((target_lengths > U1 - 1).any()) or bool((target_lengths < 0).any()):
        raise ValueError(f"target_lengths must be in [0, {U1 - 1}], got {target_lengths.tolist()}")


def native_rnnt_loss(
    logits: Tensor, targets: Tensor, logit_lengths: Tensor, target_lengths: Tensor, blank: int = 0, reduction: str = "mean"
) -> Tensor:
    """Args: logits (B, T, U+1, V), targets (B, U), logit_lengths (B,), target_lengths (B,).
    Returns (B,) for reduction 'none', else a scalar."""
    _check(logits, targets, logit_lengths, target_lengths)
    B, T, U1, V = logits.shape
    log_probs = torch.log_softmax(logits.float(), dim=-1)  # (B, T, U+1, V)
    index = targets.long().view(B, 1, U1 - 1, 1).expand(B, T, U1 - 1, 1)
    label = log_probs[:, :, :-1].gather(3, index).squeeze(3)  # (B, T, U)
    px = torch.nn.functional.pad(label.transpose(1, 2), (0, 1), value=float("-inf"))  # (B, U, T+1)
    py = log_probs[..., blank].transpose(1, 2)  # (B, U+1, T)
    boundary = make_boundary(logit_lengths, target_lengths)
    scores, _ = mutual_information_recursion(mask_past_end(px, boundary), py, boundary)
    return reduce_loss(scores, reduction)


def torchaudio_rnnt_loss(
    logits: Tensor, targets: Tensor, logit_lengths: Tensor, target_lengths: Tensor, blank: int = 0, reduction: str = "mean"
) -> Tensor:
    """The same through ``torchaudio.functional.rnnt_loss`` (int32 targets and lengths)."""
    _check(logits, targets, logit_lengths, target_lengths)
    from torchaudio.functional import rnnt_loss

    return rnnt_loss(
        logits.float(),
        targets.int(),
        logit_lengths.int(),
        target_lengths.int(),
        blank=blank,
        reduction=reduction,
    )


def rnnt_loss(
    logits: Tensor,
    targets: Tensor,
    logit_lengths: Tensor,
    target_lengths: Tensor,
    blank: int = 0,
    reduction: str = "mean",
    backend: str = "native",
) -> Tensor:
    """The full loss with the named backend (``native`` or ``torchaudio``)."""
    if backend == "native":
        return native_rnnt_loss(logits, targets, logit_lengths, target_lengths, blank, reduction)
    if backend == "torchaudio":
        return torchaudio_rnnt_loss(logits, targets, logit_lengths, target_lengths, blank, reduction)
    raise ValueError(f"rnnt loss backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
