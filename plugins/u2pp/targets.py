"""Decoder inputs and outputs from padded token targets (WeNet's ``add_sos_eos`` and
``reverse_pad_list`` conventions: inputs padded with <eos>, outputs with the ignore id)."""
from __future__ import annotations

import torch
from torch import Tensor

from speechforge.modules.mask import padding_mask

IGNORE_ID = -1


def add_sos_eos(ys: Tensor, lens: Tensor, sos: int, eos: int, ignore_id: int = IGNORE_ID) -> tuple[Tensor, Tensor]:
    """Teacher-forcing pairs: ``[sos, y1 .. yn]`` in, ``[y1 .. yn, eos]`` out.

    Args: ys (N, U) tokens, valid up to ``lens`` (N,) (anything after is ignored).
    Returns: ys_in (N, U + 1) padded with ``eos``, ys_out (N, U + 1) padded with ``ignore_id``.
    """
    n, size = ys.shape
    valid = padding_mask(lens, size)  # (N, U)
    ys_in = ys.new_full((n, size + 1), eos)
    ys_in[:, 0] = sos
    ys_in[:, 1:] = torch.where(valid, ys, ys_in[:, 1:])
    ys_out = ys.new_full((n, size + 1), ignore_id)
    ys_out[:, :size] = torch.where(valid, ys, ys_out[:, :size])
    ys_out.scatter_(1, lens.unsqueeze(1).long(), eos)
    return ys_in, ys_out


def reverse_pad_list(ys: Tensor, lens: Tensor, pad_value: int = IGNORE_ID) -> Tensor:
    """Each sequence's valid tokens reversed in place, the rest ``pad_value``.

    Args: ys (N, U), lens (N,). Returns (N, U).
    """
    size = ys.size(1)
    positions = torch.arange(size, device=ys.device)
    source = (lens.unsqueeze(1) - 1 - positions).clamp(min=0)  # (N, U)
    reversed_ys = ys.gather(1, source.long())
    return reversed_ys.masked_fill(~padding_mask(lens, size), pad_value)
