"""Multi-head scaled dot-product attention (Vaswani et al., 2017), registered as ``mha``.

Two numerically equal paths: ``use_sdpa=True`` calls ``torch.nn.functional.
scaled_dot_product_attention`` (fused kernels, no materialised probabilities where the backend
allows), ``use_sdpa=False`` materialises the scores and is the reference the fast paths and
plugins are tested against.

The query, key and value projections are one ``nn.Linear(D, 3D)``, ``linear_qkv`` (rows: q,
then k, then v): self-attention projects with one matmul, forward and backward. Checkpoints
with separate ``linear_q``/``linear_k``/``linear_v`` (older speechforge, ESPnet) load through
a state-dict pre-hook that concatenates them.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechforge.interfaces import Attention

_SEPARATE_PROJECTIONS = ("linear_q", "linear_k", "linear_v")


class MultiHeadAttention(Attention):
    """Self- or cross-attention with optional streaming K/V cache."""

    def __init__(
        self,
        *,
        d_model: int,
        heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        use_sdpa: bool = True,
    ) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by heads ({heads})")
        self.heads = heads
        self.d_model = d_model
        self.d_head = d_model // heads
        self.dropout_p = dropout
        self.use_sdpa = use_sdpa
        self.linear_qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.linear_out = nn.Linear(d_model, d_model, bias=bias)
        self._register_load_state_dict_pre_hook(merge_separate_projections)

    def initial_cache(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """No keys yet: (B, H, 0, 2 * dk)."""
        return torch.zeros(batch_size, self.heads, 0, 2 * self.d_head, device=device, dtype=dtype)

    def split_heads(self, x: Tensor) -> Tensor:
        """(B, T, D) -> (B, H, T, dk), a view."""
        return x.view(x.size(0), x.size(1), self.heads, self.d_head).transpose(1, 2)

    def project(self, query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Q, K, V projections, each (B, T, D), all through ``linear_qkv``.

        Self-attention is one matmul. Cross-attention (a decoder's queries against the encoder
        memory) projects the queries and the memory through the same layer and keeps the
        thirds it needs: 2D extra output columns for the few queries and D for the memory, the
        price of having one layer that a swap or parametrization reaches on every path.
        """
        if query is key and key is value:
            return self.linear_qkv(query).chunk(3, dim=-1)
        q = self.linear_qkv(query)[..., : self.d_model]
        if key is value:
            k, v = self.linear_qkv(key)[..., self.d_model :].chunk(2, dim=-1)
            return q, k, v
        k = self.linear_qkv(key)[..., self.d_model : 2 * self.d_model]
        v = self.linear_qkv(value)[..., 2 * self.d_model :]
        return q, k, v

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None,
        pos_emb: Tensor | None = None,
        cache: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        q, k, v = (self.split_heads(t) for t in self.project(query, key, value))
        k, v, new_cache = extend_with_cache(k, v, cache)
        out = self.attend(q, k, v, mask, bias=None)
        return out, new_cache

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, bias: Tensor | None) -> Tensor:
        """Softmax attention over heads plus output projection.

        Args:
            q: (B, H, Tq, dk); k, v: (B, H, Tk, dk).
            mask: (B, 1 | Tq, Tk) bool or None.
            bias: (B, H, Tq, Tk) unscaled score bias (relative positions) or None.
        Returns: (B, Tq, D), zero on rows with no key to attend to.
        """
        scale = 1.0 / math.sqrt(self.d_head)
        empty_rows = None
        if mask is not None:
            mask = mask.unsqueeze(1)  # (B, 1, 1|Tq, Tk)
            empty_rows = ~mask.any(dim=-1, keepdim=True)  # (B, 1, 1|Tq, 1)
            mask = mask | empty_rows  # keep softmax finite; those rows are zeroed below
        dropout = self.dropout_p if self.training else 0.0
        # SDPA has no fused backward for a bias that needs a gradient: it would run its generic
        # math kernel, slower than the in-place one below.
        if self.use_sdpa and (bias is None or not bias.requires_grad):
            attn_mask = mask
            if bias is not None:
                attn_mask = bias * scale
                if mask is not None:
                    attn_mask = attn_mask.masked_fill_(~mask, float("-inf"))
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout, scale=scale)
        else:
            # in place: the matmul's backward does not need its output
            scores = torch.matmul(q, k.transpose(-2, -1))  # (B, H, Tq, Tk)
            if bias is not None:
                scores = scores.add_(bias)
            scores = scores.mul_(scale)
            if mask is not None:
                scores = scores.masked_fill_(~mask, float("-inf"))
            probs = F.dropout(torch.softmax(scores, dim=-1), dropout, self.training)
            out = torch.matmul(probs, v)  # (B, H, Tq, dk)
        if empty_rows is not None:
            out = out.masked_fill(empty_rows, 0.0)
        out = out.transpose(1, 2).reshape(q.size(0), q.size(2), -1)  # (B, Tq, D)
        out = self.linear_out(out)
        if empty_rows is not None:
            out = out.masked_fill(empty_rows.squeeze(1), 0.0)
        return out


def limit_cache(cache: Tensor, frames: int) -> Tensor:
    """The last ``frames`` frames of a (B, H, Tc, 2 * dk) cache; -1 keeps all."""
    if frames < 0:
        return cache
    return cache[:, :, max(cache.size(2) - frames, 0) :]


def extend_with_cache(k: Tensor, v: Tensor, cache: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
    """Prepend cached keys/values (B, H, Tc, 2 * dk); return them with the cache to carry on."""
    if cache is None:
        return k, v, None
    cached_k, cached_v = cache.chunk(2, dim=-1)
    k = torch.cat((cached_k, k), dim=2)
    v = torch.cat((cached_v, v), dim=2)
    return k, v, torch.cat((k, v), dim=-1)


def merge_separate_projections(
    state_dict: dict[str, Tensor], prefix: str, local_metadata: dict, strict: bool, *args: object
) -> None:
    """Load-state-dict pre-hook: ``linear_q``/``linear_k``/``linear_v`` weights and biases, as
    older checkpoints and ESPnet store them, become ``linear_qkv``'s (rows q, k, v)."""
    for suffix in ("weight", "bias"):
        keys = [f"{prefix}{name}.{suffix}" for name in _SEPARATE_PROJECTIONS]
        if all(key in state_dict for key in keys):
            state_dict[f"{prefix}linear_qkv.{suffix}"] = torch.cat([state_dict.pop(key) for key in keys])
