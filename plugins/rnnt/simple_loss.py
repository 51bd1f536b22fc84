"""The simple (trivial-joiner) transducer loss of k2's pruned RNN-T (Kuang et al., 2022).

The joiner is replaced by ``logits[b, t, s, :] = am[b, t, :] + lm[b, s, :]``: the (T, S+1, C)
lattice of log-probabilities is never built, because its normaliser is a matrix product,
``log sum_c exp(am[t, c] + lm[s, c]) = log (exp(lm) @ exp(am)^T)[s, t]`` (maxima subtracted for
range), and the symbol and blank scores are gathers of am and lm. The recursion then runs over
the (S+1) x (T+1) lattice (``lattice.mutual_information_recursion``), and its arc occupation
gradients choose the prune ranges of the pruned loss.

Smoothing (``lm_only_scale``, ``am_only_scale``) interpolates these log-probabilities with an
LM-only one (lm normalised on its own) and an AM-only one (am with a unigram LM averaged over
the batch), which keeps am and lm individually meaningful. All of it, including the
``1e-20`` stand-in for a zero scale and the delay penalty's centring, follows k2 1.23.4's
``rnnt_loss_simple`` / ``rnnt_loss_smoothed``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from speechforge_plugins.rnnt.lattice import mutual_information_recursion

RNNT_TYPES = ("regular", "modified", "constrained")
REDUCTIONS = ("none", "mean", "sum")


def check_rnnt_type(rnnt_type: str) -> None:
    """Raise for a topology k2 does not define."""
    if rnnt_type not in RNNT_TYPES:
        raise ValueError(f"rnnt_type must be one of {', '.join(RNNT_TYPES)}, got {rnnt_type!r}")


def reduce_loss(negated: Tensor, reduction: str) -> Tensor:
    """Loss from per-sequence scores (B,): 'none' (B,), 'mean' or 'sum' scalars."""
    if reduction == "none":
        return -negated
    if reduction == "mean":
        return -negated.mean()
    if reduction == "sum":
        return -negated.sum()
    raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")


def mask_past_end(px: Tensor, boundary: Tensor | None) -> Tensor:
    """Regular topology, px (B, S, T+1): no symbol may be emitted on the frame one past each
    sequence's last (``px[b, :, T_b] = -inf``), so the lattice ends with a blank."""
    if boundary is None:
        return px
    B, S, T1 = px.shape
    return px.scatter(2, boundary[:, 3].view(B, 1, 1).expand(B, S, T1), float("-inf"))


def add_delay_penalty(px: Tensor, boundary: Tensor | None, rnnt_type: str, delay_penalty: float) -> Tensor:
    """Reward early symbols: ``px[b, s, t] += delay_penalty * ((T_b - 1) / 2 - t)`` (centred on
    the utterance's middle frame so the total stays comparable). px (B, S, T or T+1)."""
    if delay_penalty <= 0.0:
        return px
    B, S, T0 = px.shape
    T = T0 - 1 if rnnt_type == "regular" else T0
    if boundary is None:
        offset = px.new_full((B,), (T - 1) / 2)
    else:
        offset = (boundary[:, 3] - 1) / 2
    penalty = offset.view(B, 1, 1) - torch.arange(T0, device=px.device).view(1, 1, T0)
    return px + (penalty * delay_penalty).to(px.dtype)


def apply_topology(px: Tensor, py: Tensor, boundary: Tensor | None, rnnt_type: str) -> Tensor:
    """The last step of every lattice's log-probabilities: regular masks the frame past each
    end, constrained adds the forced blank, modified is as is. px (B, S, T[+1]), py (B, S+1, T)."""
    if rnnt_type == "regular":
        return mask_past_end(px, boundary)
    if rnnt_type == "constrained":
        # a symbol on frame t is followed by the blank of the next context on the same frame
        return px + py[:, 1:, :]
    return px


def _symbol_and_blank_scores(
    am: Tensor, lm: Tensor, symbols: Tensor, blank: int, rnnt_type: str
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Unnormalised pieces: px_am (B, S, T[+1]) with the regular topology's -inf column,
    px_lm (B, S, 1), py_am (B, 1, T), py_lm (B, S+1, 1)."""
    B, T, C = am.shape
    S = symbols.size(1)
    px_am = am.gather(2, symbols.unsqueeze(1).expand(B, T, S)).transpose(1, 2)  # (B, S, T)
    if rnnt_type == "regular":
        px_am = torch.nn.functional.pad(px_am, (0, 1), value=float("-inf"))  # (B, S, T+1)
    px_lm = lm[:, :S].gather(2, symbols.unsqueeze(-1))  # (B, S, 1)
    py_am = am[:, :, blank].unsqueeze(1)  # (B, 1, T)
    py_lm = lm[:, :, blank].unsqueeze(2)  # (B, S+1, 1)
    return px_am, px_lm, py_am, py_lm


def _check_shapes(am: Tensor, lm: Tensor, symbols: Tensor) -> None:
    B, T, C = am.shape
    if lm.dim() != 3 or lm.size(0) != B or lm.size(2) != C:
        raise ValueError(f"lm must be (B, S+1, C) = ({B}, S+1, {C}) for am {tuple(am.shape)}, got {tuple(lm.shape)}")
    if symbols.shape != (B, lm.size(1) - 1):
        raise ValueError(f"symbols must be (B, S) = ({B}, {lm.size(1) - 1}), got {tuple(symbols.shape)}")
    if symbols.size(1) < 1 or T < symbols.size(1):
        raise ValueError(f"the pruned RNN-T lattice needs 1 <= S <= T, got S={symbols.size(1)}, T={T}")


def simple_logprobs(
    lm: Tensor, am: Tensor, symbols: Tensor, blank: int, boundary: Tensor | None = None, rnnt_type: str = "regular"
) -> tuple[Tensor, Tensor]:
    """k2's ``get_rnnt_logprobs``: the trivial joiner's lattice scores.

    Args: lm (B, S+1, C) predictor logits, am (B, T, C) encoder logits, symbols (B, S),
    boundary (B, 4) or None. Returns px (B, S, T+1) [regular] or (B, S, T), and py (B, S+1, T).
    """
    check_rnnt_type(rnnt_type)
    _check_shapes(am, lm, symbols)
    T, S = am.size(1), symbols.size(1)
    am_max = am.max(dim=2, keepdim=True).values  # (B, T, 1)
    lm_max = lm.max(dim=2, keepdim=True).values  # (B, S+1, 1)
    am_probs, lm_probs = (am - am_max).exp(), (lm - lm_max).exp()
    normalizers = (lm_probs @ am_probs.transpose(1, 2) + torch.finfo(am.dtype).tiny).log()  # (B, S+1, T)
    normalizers = normalizers + lm_max + am_max.transpose(1, 2)
    px_am, px_lm, py_am, py_lm = _symbol_and_blank_scores(am, lm, symbols, blank, rnnt_type)
    px = px_am + px_lm
    px = torch.cat([px[:, :, :T] - normalizers[:, :S], px[:, :, T:]], dim=2)
    py = py_am + py_lm - normalizers  # (B, S+1, T)
    return apply_topology(px, py, boundary, rnnt_type), py


def smoothed_logprobs(
    lm: Tensor,
    am: Tensor,
    symbols: Tensor,
    blank: int,
    lm_only_scale: float = 0.1,
    am_only_scale: float = 0.1,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
) -> tuple[Tensor, Tensor]:
    """k2's ``get_rnnt_logprobs_smoothed``: ``simple_logprobs`` interpolated with LM-only and
    AM-only (unigram LM) log-probabilities. Shapes as ``simple_logprobs``."""
    check_rnnt_type(rnnt_type)
    _check_shapes(am, lm, symbols)
    B, T, C = am.shape
    S = symbols.size(1)
    tiny = torch.finfo(lm.dtype).tiny
    am_max = am.max(dim=2, keepdim=True).values  # (B, T, 1)
    lm_max = lm.max(dim=2, keepdim=True).values  # (B, S+1, 1)
    am_probs, lm_probs = (am - am_max).exp(), (lm - lm_max).exp()
    normalizers = (lm_probs @ am_probs.transpose(1, 2) + tiny).log() + lm_max + am_max.transpose(1, 2)  # (B, S+1, T)
    lm_sums = lm_probs.sum(dim=2, keepdim=True)  # (B, S+1, 1)
    unigram = (lm_probs / lm_sums).mean(dim=(0, 1), keepdim=True) + tiny  # (1, 1, C), over all histories
    amonly_normalizers = ((am_probs.reshape(-1, C) @ unigram.reshape(C)).view(B, 1, T)).log() + am_max.transpose(1, 2)
    log_unigram = unigram.log()
    lmonly_normalizers = lm_sums.log() + lm_max  # (B, S+1, 1)

    px_am, px_lm, py_am, py_lm = _symbol_and_blank_scores(am, lm, symbols, blank, rnnt_type)
    px_lm_unigram = log_unigram.expand(B, S, C).gather(2, symbols.unsqueeze(-1))  # (B, S, 1)
    px = px_am + px_lm
    px = torch.cat([px[:, :, :T] - normalizers[:, :S], px[:, :, T:]], dim=2)
    px_amonly = px_am + px_lm_unigram
    px_amonly = torch.cat([px_amonly[:, :, :T] - amonly_normalizers, px_amonly[:, :, T:]], dim=2)
    px_lmonly = px_lm - lmonly_normalizers[:, :S]  # (B, S, 1)

    py = py_am + py_lm - normalizers  # (B, S+1, T)
    py_amonly = py_am + log_unigram[0, 0, blank] - amonly_normalizers  # (B, 1, T) -> broadcasts
    py_lmonly = py_lm - lmonly_normalizers  # (B, S+1, 1)

    combined = 1.0 - lm_only_scale - am_only_scale
    # exact zero scales would turn -inf * 0 into NaN
    lm_only_scale = lm_only_scale or 1.0e-20
    am_only_scale = am_only_scale or 1.0e-20
    px = px * combined + px_lmonly * lm_only_scale + px_amonly * am_only_scale
    py = py * combined + py_lmonly * lm_only_scale + py_amonly * am_only_scale  # (B, S+1, T)
    return apply_topology(px, py, boundary, rnnt_type), py


def simple_rnnt_loss(
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
    """The simple loss and the occupation gradients ``(px_grad, py_grad)`` that
    ``prune.prune_ranges`` takes.

    With both scales 0 this is k2's ``rnnt_loss_simple``, otherwise ``rnnt_loss_smoothed``.
    Args: lm (B, S+1, C), am (B, T, C), symbols (B, S), boundary (B, 4) ``(0, 0, S_b, T_b)``.
    Returns the loss ((B,) for 'none', else a scalar) and px_grad, py_grad shaped like px, py.
    """
    if lm_only_scale == 0.0 and am_only_scale == 0.0:
        px, py = simple_logprobs(lm, am, symbols, blank, boundary, rnnt_type)
    else:
        px, py = smoothed_logprobs(lm, am, symbols, blank, lm_only_scale, am_only_scale, boundary, rnnt_type)
    px = add_delay_penalty(px, boundary, rnnt_type, delay_penalty)
    scores, grads = mutual_information_recursion(px, py, boundary)
    return reduce_loss(scores, reduction), grads
