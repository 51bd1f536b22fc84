"""Multi-head attention on FlashAttention kernels (Dao et al., 2022), part of the ``flash``
attention component. Parameter names are those of core's ``mha`` (``linear_q/k/v/out``), so
state dicts load either way; which kernel runs when is decided in
:mod:`speechforge_plugins.flash_attention.kernels`."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechforge.interfaces import Attention
from speechforge_plugins.flash_attention import kernels


class FlashAttention(Attention):
    """Self- or cross-attention with the streaming K/V cache of the Attention contract."""

    def __init__(
        self,
        *,
        d_model: int,
        heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        query_block: int = 256,
    ) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by heads ({heads})")
        if query_block <= 0:
            raise ValueError(f"query_block must be positive, got {query_block}")
        self.heads = heads
        self.d_head = d_model // heads
        self.dropout_p = dropout
        self.query_block = query_block
        self.linear_q = nn.Linear(d_model, d_model, bias=bias)
        self.linear_k = nn.Linear(d_model, d_model, bias=bias)
        self.linear_v = nn.Linear(d_model, d_model, bias=bias)
        self.linear_out = nn.Linear(d_model, d_model, bias=bias)

    def project(self, query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Q, K, V projections, each (B, T, D); one fused matmul for self-attention."""
        if query is key and key is value:
            weight = torch.cat((self.linear_q.weight, self.linear_k.weight, self.linear_v.weight))
            bias = None
            if self.linear_q.bias is not None:
                bias = torch.cat((self.linear_q.bias, self.linear_k.bias, self.linear_v.bias))
            q, k, v = F.linear(query, weight, bias).chunk(3, dim=-1)
            return q, k, v
        return self.linear_q(query), self.linear_k(key), self.linear_v(value)

    def split_heads(self, x: Tensor) -> Tensor:
        """(B, T, D) -> (B, H, T, dk)."""
        return x.view(x.size(0), x.size(1), self.heads, self.d_head).transpose(1, 2)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None,
        pos_emb: Tensor | None = None,
        cache: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Args:
            query: (B, Tq, D); key, value: (B, Tk, D).
            mask: (B, 1, Tc + Tk) key padding or (B, Tq, Tc + Tk) full mask, bool, True = attend.
            pos_emb: ignored (absolute positions are added to the input by the encoder).
            cache: (B, H, Tc, 2 * dk) keys and values of earlier chunks, or None.
        Returns: (B, Tq, D), zero on rows with no key to attend to, and the new cache
        (B, H, Tc + Tk, 2 * dk) when a cache was given, else None.
        """
        q, k, v = (self.split_heads(t) for t in self.project(query, key, value))  # (B, H, T, dk)
        k, v, new_cache = extend_with_cache(k, v, cache)
        return self.attend(q, k, v, mask, None), new_cache

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, position_bias: kernels.PositionBias | None
    ) -> Tensor:
        """Attention of all heads plus the output projection.

        Args:
            q: (B, H, Tq, dk); k, v: (B, H, Tk, dk).
            mask: (B, 1 | Tq, Tk) bool or None.
            position_bias: relative-position scores by block, or None.
        Returns: (B, Tq, D), zero on rows with no key to attend to.
        """
        out, empty = kernels.attention(
            q,
            k,
            v,
            mask,
            scale=1.0 / math.sqrt(self.d_head),
            dropout_p=self.dropout_p if self.training else 0.0,
            position_bias=position_bias,
            query_block=self.query_block,
        )  # (B, Tq, D)
        out = self.linear_out(out)
        if empty is not None:
            out = out.masked_fill(empty, 0.0)
        return out


def extend_with_cache(k: Tensor, v: Tensor, cache: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
    """Prepend cached keys/values (B, H, Tc, 2 * dk); return them with the cache to carry on."""
    if cache is None:
        return k, v, None
    cached_k, cached_v = cache.chunk(2, dim=-1)
    k = torch.cat((cached_k, k), dim=2)  # (B, H, Tc + Tk, dk)
    v = torch.cat((cached_v, v), dim=2)
    return k, v, torch.cat((k, v), dim=-1)
