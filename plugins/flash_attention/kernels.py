"""Which kernel computes softmax(Q Kᵀ · scale + bias) V, and how it is called.

flash-attn (Dao et al., 2022/2023) runs when it is importable, the tensors are CUDA fp16/bf16,
there is no additive bias and the mask is absent or a key padding mask: padded keys are dropped
and the rest go to ``flash_attn_varlen_func``. Everything else goes to PyTorch's
``scaled_dot_product_attention`` (SDPA), called once when SDPA can stay in O(T) memory (no mask
or a (B, 1, 1, Tk) boolean key padding mask, no bias, no dropout on CPU), and otherwise in
blocks of query rows, so that a (B, Tq, Tk) chunk mask, a relative-position bias or the math
fallback only ever exist for ``query_block`` rows at a time; each block also skips the keys no
row of it can see (the left context a chunk mask cuts off).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from speechforge.modules.export_mode import is_exporting

try:
    from flash_attn import flash_attn_func, flash_attn_varlen_func
except ImportError:  # CUDA-only package; SDPA serves everywhere else
    flash_attn_func = None
    flash_attn_varlen_func = None

#: Position-score callback: (first query row, end query row, first key, end key) ->
#: (B, H, rows, keys) unscaled scores to add to Q Kᵀ.
PositionBias = Callable[[int, int, int, int], Tensor]

FLASH_DTYPES = (torch.float16, torch.bfloat16)
FLASH_MAX_HEAD_DIM = 256


def flash_attn_applies(q: Tensor, mask: Tensor | None, position_bias: PositionBias | None) -> bool:
    """True when flash-attn can compute this call exactly.

    Args:
        q: (B, H, Tq, dk).
        mask: (B, 1 | Tq, Tk) bool or None; only key padding masks (B, 1, Tk) fit flash-attn.
        position_bias: flash-attn takes no arbitrary additive bias.
    """
    d_head = q.size(-1)
    return (
        flash_attn_varlen_func is not None
        and q.is_cuda
        and q.dtype in FLASH_DTYPES
        and position_bias is None
        and (mask is None or mask.size(1) == 1)
        and d_head % 8 == 0
        and d_head <= FLASH_MAX_HEAD_DIM
    )


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None,
    *,
    scale: float,
    dropout_p: float,
    position_bias: PositionBias | None,
    query_block: int,
) -> tuple[Tensor, Tensor | None]:
    """Softmax attention of every head, by the cheapest exact kernel.

    Args:
        q: (B, H, Tq, dk); k, v: (B, H, Tk, dk).
        mask: (B, 1 | Tq, Tk) bool, True = attend, or None.
        scale: multiplies Q Kᵀ + bias before the softmax.
        dropout_p: attention dropout (0 in eval).
        position_bias: relative-position scores, see :data:`PositionBias`, or None.
        query_block: query rows per SDPA call on the blocked path.
    Returns:
        out (B, Tq, H * dk), heads concatenated, and empty (B, 1 | Tq, 1) bool marking query
        rows with no key to attend to (their values are finite but meaningless: the caller
        zeroes them), or None when there are none.
    """
    if mask is not None:
        if mask.dim() != 3 or mask.size(-1) != k.size(2) or mask.size(1) not in (1, q.size(2)):
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not fit {q.size(2)} queries and "
                f"{k.size(2)} keys (cache included); expected (B, 1, Tk) or (B, Tq, Tk)"
            )
        empty = ~mask.any(dim=-1, keepdim=True)  # (B, 1 | Tq, 1)
        if not is_exporting() and not bool(empty.any()):
            empty = None
    else:
        empty = None
    if is_exporting():  # a graph's lengths are symbolic: no blocks, no key ranges from values
        return _whole_sdpa(q, k, v, mask, empty, scale, position_bias).transpose(1, 2).flatten(2), empty
    if flash_attn_applies(q, mask, position_bias):
        return _flash_attn(q, k, v, mask, empty, scale, dropout_p), empty
    blocked = (
        position_bias is not None
        or (mask is not None and mask.size(1) > 1)
        or (dropout_p > 0.0 and q.device.type == "cpu")  # CPU SDPA falls back to math
    )
    if blocked:
        out = _blocked_sdpa(q, k, v, mask, scale, dropout_p, position_bias, query_block)
    else:
        attn_mask = None
        if mask is not None:
            attn_mask = (mask if empty is None else mask | empty).unsqueeze(1)  # (B, 1, 1, Tk)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, scale=scale)
    return out.transpose(1, 2).flatten(2), empty  # (B, Tq, H * dk)


def _flash_attn(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, empty: Tensor | None, scale: float, dropout_p: float
) -> Tensor:
    """flash-attn on (B, T, H, dk) views; a key padding mask drops padded keys (varlen).

    Every query row is kept, as the reference does: a padded query still attends to the valid
    keys of its utterance. Utterances without any valid key attend to all of theirs so the
    kernel never sees an empty sequence; the caller zeroes those rows.
    """
    batch, heads, q_len, d_head = q.shape
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, T, H, dk), unit stride in dk
    if mask is None:
        out = flash_attn_func(q, k, v, dropout_p=dropout_p, softmax_scale=scale)
        return out.flatten(2)  # (B, Tq, H * dk)
    keep = (mask if empty is None else mask | empty).squeeze(1)  # (B, Tk)
    k_len = k.size(1)
    index = keep.flatten().nonzero().squeeze(1)  # (total_k,) positions of valid keys
    k_unpadded = k.reshape(batch * k_len, heads, d_head).index_select(0, index)  # (total_k, H, dk)
    v_unpadded = v.reshape(batch * k_len, heads, d_head).index_select(0, index)
    k_lens = keep.sum(dim=1, dtype=torch.int32)  # (B,)
    cu_k = F.pad(k_lens.cumsum(0, dtype=torch.int32), (1, 0))  # (B + 1,)
    cu_q = torch.arange(0, (batch + 1) * q_len, q_len, dtype=torch.int32, device=q.device)
    out = flash_attn_varlen_func(
        q.reshape(batch * q_len, heads, d_head),
        k_unpadded,
        v_unpadded,
        cu_q,
        cu_k,
        q_len,
        int(k_lens.max()),
        dropout_p=dropout_p,
        softmax_scale=scale,
    )  # (B * Tq, H, dk)
    return out.reshape(batch, q_len, heads * d_head)


def _whole_sdpa(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None,
    empty: Tensor | None,
    scale: float,
    position_bias: PositionBias | None,
) -> Tensor:
    """One SDPA call over all query rows and keys, the position scores as one bias: the path
    an exported graph takes (the blocked path's loop and key ranges depend on values).
    Args: as :func:`attention`; empty (B, 1 | Tq, 1) rows without keys, or None.
    Returns (B, H, Tq, dk)."""
    attn_mask = None
    if mask is not None:
        attn_mask = (mask if empty is None else mask | empty).unsqueeze(1)  # (B, 1, 1 | Tq, Tk)
    if position_bias is not None:
        bias = position_bias(0, q.size(2), 0, k.size(2)) * scale  # (B, H, Tq, Tk)
        attn_mask = bias if attn_mask is None else bias.masked_fill(~attn_mask, float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale)


def _blocked_sdpa(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None,
    scale: float,
    dropout_p: float,
    position_bias: PositionBias | None,
    query_block: int,
) -> Tensor:
    """SDPA over ``query_block`` query rows at a time, each seeing only the key range its mask
    allows. Returns (B, H, Tq, dk); rows without keys hold finite values or zeros."""
    batch, heads, q_len, d_head = q.shape
    outs = []
    for start in range(0, q_len, query_block):
        end = min(start + query_block, q_len)
        lo, hi = 0, k.size(2)
        attn_mask = None
        if mask is not None:
            rows = mask if mask.size(1) == 1 else mask[:, start:end]  # (B, 1 | rows, Tk)
            visible = rows.any(dim=1).any(dim=0).nonzero()  # keys some row of the block sees
            if visible.numel() == 0:
                outs.append(q.new_zeros(batch, heads, end - start, d_head))
                continue
            lo, hi = int(visible[0]), int(visible[-1]) + 1
            rows = rows[..., lo:hi]
            rows = rows | ~rows.any(dim=-1, keepdim=True)  # keep empty rows finite
            attn_mask = rows.unsqueeze(1)  # (B, 1, 1 | rows, keys)
        if position_bias is not None:
            bias = position_bias(start, end, lo, hi) * scale  # (B, H, rows, keys)
            attn_mask = bias if attn_mask is None else bias.masked_fill(~attn_mask, float("-inf"))
        outs.append(
            F.scaled_dot_product_attention(
                q[:, :, start:end], k[:, :, lo:hi], v[:, :, lo:hi], attn_mask=attn_mask, dropout_p=dropout_p, scale=scale
            )
        )
    return torch.cat(outs, dim=2)
