"""Storage of quantization metadata (scales, zero points) as float32 or as int8.

``int8`` is double quantization: the per-block values of one tensor are stored as int8 codes
with one float32 step for the whole tensor (symmetric absmax, codes in [-127, 127]), so a value
costs 8 bits instead of 32 (the paper's "int8 meta" column of Table 2). The fake quantizers
apply it in their forward (training sees the rounded metadata) and the packer stores the very
same codes, so the packed model computes with exactly the values training saw.
"""
from __future__ import annotations

import torch
from torch import Tensor

from speechforge.errors import ConfigError

METADATA_DTYPES = ("float32", "int8")
INT8_MAX = 127


def check_metadata_dtype(scale_dtype: str, name: str) -> str:
    """Returns ``scale_dtype`` if it is one of METADATA_DTYPES, else raises naming ``name``."""
    if scale_dtype not in METADATA_DTYPES:
        raise ConfigError(f"{name}: scale_dtype must be one of {METADATA_DTYPES}, got {scale_dtype!r}")
    return scale_dtype


def int8_encode(values: Tensor) -> tuple[Tensor, Tensor]:
    """Double quantization of one tensor of metadata.

    Args:
        values: any shape, float.
    Returns:
        (codes, step): int8 codes of ``values``' shape and a float32 0-dim step, with
        ``values ~= codes * step`` and ``step = max|values| / 127``.
    """
    values = values.detach().float()
    step = values.abs().amax().clamp_min(torch.finfo(torch.float32).tiny) / INT8_MAX
    codes = torch.round(values / step).clamp(-INT8_MAX, INT8_MAX).to(torch.int8)
    return codes, step


def int8_decode(codes: Tensor, step: Tensor) -> Tensor:
    """float32 values of int8 ``codes`` with their tensor ``step``."""
    return codes.float() * step


def fake_quantize_metadata(values: Tensor, scale_dtype: str) -> Tensor:
    """``values`` as they will be stored: unchanged for float32; for int8 rounded to their codes
    in the forward, with a straight-through (identity) gradient."""
    if scale_dtype == "float32":
        return values
    stored = int8_decode(*int8_encode(values)).to(values.dtype)
    return stored + (values - values.detach())
