"""The Mamba layer (Gu & Dao, 2023, "Mamba: Linear-time sequence modeling with selective state
spaces", Sec. 3.4 and Fig. 3). Parameter names and initialisation follow mamba-ssm's
``Mamba`` module, so its weights load one to one."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechforge.modules.export_mode import is_exporting
from speechforge_plugins.mamba.selective_scan import (
    selective_scan_chunked,
    selective_scan_sequential,
    selective_scan_step,
)
from speechforge_plugins.mamba.selective_scan_cpu import cpu_kernel_available, selective_scan_cpu
from speechforge_plugins.mamba.selective_scan_export import selective_scan_export

try:
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
except ImportError:  # CUDA-only package; the PyTorch scans serve everywhere else
    selective_scan_fn = None

SCANS = ("auto", "cpu_kernel", "chunked", "sequential")


class MambaMixer(nn.Module):
    """in_proj → (x, z); x → causal depthwise conv → SiLU → selective scan with input-dependent
    delta, B, C → + D·x → · SiLU(z) → out_proj.

    Frames marked invalid by ``pad_mask`` get a zero input and delta = 0, so they neither feed
    nor decay the state, and a zero output.

    Every projection and the convolution are called as modules. ``fusable_activations`` tells
    :func:`~speechforge.modules.inference_transform.optimize_for_cpu_inference` that the SiLU
    follows the depthwise convolution, which it then runs as one channels-last oneDNN
    convolution with the SiLU in its epilogue.
    """

    fusable_activations = (("conv1d", "activation"),)

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
        self.activation = nn.SiLU()
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
        """True when mamba-ssm's fused CUDA scan runs (``scan: auto``, CUDA, whole sequence, not
        under a graph exporter, which cannot record it)."""
        if is_exporting():
            return False
        return self.scan == "auto" and selective_scan_fn is not None and x.is_cuda and not streaming

    def uses_cpu_kernel(self, x: Tensor, streaming: bool) -> bool:
        """True when the fused CPU scan runs: ``scan: cpu_kernel``, or ``scan: auto`` on CPU
        tensors once the kernel is built (:func:`cpu_kernel_available`); not for a streamed
        chunk of one frame, which takes one step, nor under a graph exporter, which cannot record
        the kernel."""
        if is_exporting() or (streaming and x.size(1) == 1):
            return False
        if self.scan == "cpu_kernel":
            return True
        return self.scan == "auto" and x.device.type == "cpu" and cpu_kernel_available()

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
        valid = None if pad_mask is None else pad_mask.unsqueeze(-1)  # (B, L, 1)
        if valid is not None:
            x = x.masked_fill(~valid, 0.0)
        h, z = self.in_proj(x).chunk(2, dim=-1)  # (B, L, Din) each: the scan's input, the gate
        u, conv_state = self._conv(h, None if cache is None else cache[0])  # (B, L, Din)
        dt, B, C = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = self.dt_proj(dt)  # (B, L, Din), softplus's input
        B, C = B.transpose(1, 2), C.transpose(1, 2)  # (B, N, L)
        u, z = u.transpose(1, 2), z.transpose(1, 2)  # (B, Din, L), channel-last memory
        A = -torch.exp(self.A_log.float())  # (Din, N)
        state = None if cache is None else cache[1]
        ssm_state = None
        if self.uses_kernel(x, cache is not None):  # mamba-ssm, CUDA
            delta = self._delta(dt, valid).transpose(1, 2)  # (B, Din, L)
            y = selective_scan_fn(u, delta, A, B.contiguous(), C.contiguous(), self.D.float(), z)
        elif self.uses_cpu_kernel(x, cache is not None):  # softplus, D skip and gate fused
            if valid is not None:
                dt = dt.masked_fill(~valid, torch.finfo(dt.dtype).min)  # softplus -> delta = 0
            y, ssm_state = selective_scan_cpu(
                u, dt.transpose(1, 2), A, B, C, state, D=self.D.float(), z=z, delta_softplus=True
            )  # (B, Din, L), memory (B, L, Din)
        else:
            delta = self._delta(dt, valid).transpose(1, 2)  # (B, Din, L)
            y, ssm_state = self._scan(u, delta, A, B, C, state)
            y = (y + u * self.D.unsqueeze(-1)) * F.silu(z)  # (B, Din, L)
        out = self.out_proj(y.transpose(1, 2))  # (B, L, D)
        if valid is not None:
            out = out.masked_fill(~valid, 0.0)
        if cache is None:
            return out, None
        return out, (conv_state, ssm_state)

    def _conv(self, h: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
        """SiLU of the causal depthwise convolution of ``h``, the in_proj half that feeds the scan.

        The left context is the previous chunk's last inputs, or zero frames (what in_proj,
        having no bias, makes of the zero input frames before the utterance). The convolution
        reads the (B, Din, d_conv - 1 + L) view of (B, L, Din) memory, in the layer's dtype
        outside autocast: oneDNN's bf16 depthwise kernel, which autocast would pick, can take
        minutes to generate.

        Args:
            h: (B, L, Din) in_proj's first half.
            state: (B, Din, d_conv - 1) last conv inputs of the previous chunk, or None (zeros).
        Returns: u (B, L, Din) and the new state (B, Din, d_conv - 1).
        """
        context = self.d_conv - 1
        if state is None:
            h = F.pad(h, (0, 0, context, 0))  # (B, d_conv - 1 + L, Din)
        else:
            h = torch.cat((state.transpose(1, 2).to(h.dtype), h), dim=1)  # (B, d_conv - 1 + L, Din)
        new_state = h[:, h.size(1) - context :].transpose(1, 2)
        dtype = next(self.conv1d.parameters()).dtype
        with torch.autocast(h.device.type, enabled=False):
            u = self.activation(self.conv1d(h.to(dtype).transpose(1, 2)))  # (B, Din, L)
        return u.transpose(1, 2), new_state

    @staticmethod
    def _delta(dt: Tensor, valid: Tensor | None) -> Tensor:
        """(B, L, Din) softplus(dt), 0 on padded frames."""
        delta = F.softplus(dt)
        return delta if valid is None else delta.masked_fill(~valid, 0.0)

    def _scan(
        self, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, state: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """The PyTorch scans; a single streamed frame takes one step. Under a graph exporter the
        scan is :func:`selective_scan_export`, whose loops do not depend on the length (the other
        scans' would be unrolled for the traced length only)."""
        if state is not None and u.size(2) == 1:
            y, state = selective_scan_step(
                state.float(), u[:, :, 0].float(), delta[:, :, 0].float(), A, B[:, :, 0].float(), C[:, :, 0].float()
            )
            return y.unsqueeze(-1).to(u.dtype), state
        if is_exporting():
            return selective_scan_export(u, delta, A, B, C, state)
        if self.scan == "sequential":
            return selective_scan_sequential(u, delta, A, B, C, state)
        return selective_scan_chunked(u, delta, A, B, C, state, self.chunk_size)
