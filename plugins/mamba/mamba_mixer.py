"""The Mamba layer (Gu & Dao, 2023, "Mamba: Linear-time sequence modeling with selective state
spaces", Sec. 3.4 and Fig. 3). Parameter names and initialisation follow mamba-ssm's
``Mamba`` module, so its weights load one to one."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechforge_plugins.mamba.selective_scan import (
    selective_scan_chunked,
    selective_scan_sequential,
    selective_scan_step,
)

try:
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
except ImportError:  # CUDA-only package; the PyTorch scans serve everywhere else
    selective_scan_fn = None

SCANS = ("auto", "chunked", "sequential")


class MambaMixer(nn.Module):
    """in_proj → (x, z); x → causal depthwise conv → SiLU → selective scan with input-dependent
    delta, B, C → + D·x → · SiLU(z) → out_proj.

    Frames marked invalid by ``pad_mask`` get a zero input and delta = 0, so they neither feed
    nor decay the state, and a zero output.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_init_floor: float = 1e-4,
        chunk_size: int = 64,
        scan: str = "auto",
    ) -> None:
        super().__init__()
        if scan not in SCANS:
            raise ValueError(f"scan must be one of {', '.join(SCANS)}, got {scan!r}")
        if d_conv < 1:
            raise ValueError(f"d_conv must be at least 1, got {d_conv}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        self.d_inner = expand * d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.dt_rank = dt_rank if dt_rank is not None else math.ceil(d_model / 16)
        self.chunk_size = chunk_size
        self.scan = scan
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1))
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        self._init_dt(dt_min, dt_max, dt_init_floor)

    @torch.no_grad()
    def _init_dt(self, dt_min: float, dt_max: float, dt_init_floor: float) -> None:
        """dt_proj as in the paper: weights U(±rank^-0.5); the bias is softplus⁻¹ of dt drawn
        log-uniformly in [dt_min, dt_max], so that softplus(bias) starts as that dt."""
        nn.init.uniform_(self.dt_proj.weight, -self.dt_rank**-0.5, self.dt_rank**-0.5)
        log_dt = torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        dt = torch.exp(log_dt).clamp(min=dt_init_floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus⁻¹(dt)

    def uses_kernel(self, x: Tensor, streaming: bool) -> bool:
        """True when mamba-ssm's fused CUDA scan runs (``scan: auto``, CUDA, whole sequence)."""
        return self.scan == "auto" and selective_scan_fn is not None and x.is_cuda and not streaming

    def forward(
        self, x: Tensor, pad_mask: Tensor | None = None, cache: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
        """Args:
            x: (B, L, D).
            pad_mask: (B, L) bool, True = valid frame, or None.
            cache: (conv, ssm) state of the previous chunk: (B, Din, d_conv - 1) last conv
                inputs and (B, Din, N) scan state; None for a whole utterance.
        Returns: (B, L, D), zero on padded frames, and the new (conv, ssm) state when a cache
        was given, else None.
        """
        length = x.size(1)
        valid = None if pad_mask is None else pad_mask.unsqueeze(-1)  # (B, L, 1)
        if valid is not None:
            x = x.masked_fill(~valid, 0.0)
        h, z = self.in_proj(x).chunk(2, dim=-1)  # (B, L, Din) each
        h = h.transpose(1, 2)  # (B, Din, L)
        if cache is None:
            h = F.pad(h, (self.d_conv - 1, 0))  # causal: only past frames
        else:
            h = torch.cat((cache[0].to(h.dtype), h), dim=2)  # (B, Din, d_conv - 1 + L)
        conv_state = h[:, :, h.size(2) - (self.d_conv - 1) :]
        u = F.silu(F.conv1d(h, self.conv1d.weight, self.conv1d.bias, groups=self.d_inner))  # (B, Din, L)
        dt, B, C = self.x_proj(u.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))  # (B, L, Din)
        if valid is not None:
            delta = delta.masked_fill(~valid, 0.0)
        delta, B, C = delta.transpose(1, 2), B.transpose(1, 2), C.transpose(1, 2)  # (B, Din|N, L)
        A = -torch.exp(self.A_log.float())  # (Din, N)
        z = z.transpose(1, 2)  # (B, Din, L)
        if self.uses_kernel(x, cache is not None):
            y = selective_scan_fn(u, delta, A, B.contiguous(), C.contiguous(), self.D.float(), z)
            ssm_state = None
        else:
            y, ssm_state = self._scan(u, delta, A, B, C, None if cache is None else cache[1])
            y = (y + u * self.D.unsqueeze(-1)) * F.silu(z)  # (B, Din, L)
        out = self.out_proj(y.transpose(1, 2))  # (B, L, D)
        if valid is not None:
            out = out.masked_fill(~valid, 0.0)
        if cache is None:
            return out, None
        return out, (conv_state, ssm_state)

    def _scan(
        self, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, state: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """The PyTorch scans; a single streamed frame takes one step."""
        if state is not None and u.size(2) == 1:
            y, state = selective_scan_step(
                state.float(), u[:, :, 0].float(), delta[:, :, 0].float(), A, B[:, :, 0].float(), C[:, :, 0].float()
            )
            return y.unsqueeze(-1).to(u.dtype), state
        if self.scan == "sequential":
            return selective_scan_sequential(u, delta, A, B, C, state)
        return selective_scan_chunked(u, delta, A, B, C, state, self.chunk_size)
