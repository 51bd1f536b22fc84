"""Mixture-of-Experts feed-forward layer (U2++ MoE, Song et al., 2024), registered as ``ffn``
``moe``.

U2++ MoE swaps every dense FFN of the Conformer encoder and of the attention decoders for this
layer: a bias-free linear router picks ``top_k`` of ``num_experts`` dense FFNs per frame, the
chosen experts' outputs are mixed with a softmax over the selected router logits, and nothing
else changes (no auxiliary loss is needed; :class:`MoEAuxLoss` adds Switch/ST-MoE style ones
when asked).

The experts' weights are stacked, ``w_1`` (E, H, D) and ``w_2`` (E, D, H), so that all experts
can run as one batched GEMM. Dispatch never loops over frames and never runs an expert on a
frame it was not given: the (frame, expert) assignments are sorted by expert and every expert
runs once on its contiguous group, either one GEMM pair per expert (``grouped``) or one
``torch.baddbmm`` pair over groups padded to the largest (``padded``); the outputs are then
gathered back into frame order and mixed with the routing weights.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechforge.errors import ConfigError
from speechforge.interfaces import FeedForward
from speechforge.modules.activation import make_activation
from speechforge.modules.dropout import Dropout
from speechforge.modules.fused_linear import WeightPacker, linear

DISPATCHES = ("auto", "grouped", "padded")

#: ``auto`` on an accelerator takes the padded batched GEMM (two GEMM launches instead of 2E)
#: while padding every group to the largest adds at most this fraction of rows. On a CPU it
#: always runs the experts one by one on their exact groups: with core's fused oneDNN linear
#: that was faster at every shape measured (4 to 3984 assignments, top-1 and top-2; see
#: docs/plugins/moe.md), since a padded ``baddbmm`` reads every expert's weights as well and
#: cannot fuse the bias and activation.
PADDED_MAX_WASTE = 0.5

#: (w_1, b_1, w_gate, b_gate, w_2, b_2): stacked (E, H, D), (E, H), (E, D, H), (E, D) or None
ExpertWeights = tuple[Tensor, "Tensor | None", "Tensor | None", "Tensor | None", Tensor, "Tensor | None"]


@dataclass
class RouterState:
    """The routing of the latest forward, kept for the auxiliary losses.

    Attributes:
        logits: (N, E) router logits of the N frames (attached to the graph while training).
        counts: (E,) int64, assignments each expert received before capacity dropping.
        top_k: experts per frame.
    """

    logits: Tensor
    counts: Tensor
    top_k: int


class MoEFeedForward(FeedForward):
    """Top-k routed mixture of dense FFN experts.

    Expert ``e`` holds ``w_1[e]`` (H, D), ``w_2[e]`` (D, H) (and ``w_gate[e]``), laid out like
    the ``nn.Linear`` weights of core's dense FFN, so a dense checkpoint copies into any expert.
    Each forward reads the stacked weights once, so a parametrization of ``w_1``, ``w_gate`` or
    ``w_2`` (``torch.nn.utils.parametrize``) reaches every expert on every path. A module may
    also stand in for a stacked weight (``layer.w_1 = module``) if it is indexed like one:
    ``module[e]`` gives expert e's (O, I) weight, made when that expert runs (the quant
    plugin's packed bank, which never expands the whole float stack). The layer then runs its
    experts one by one whatever ``dispatch`` says, without oneDNN copies: the padded batched
    GEMM and the copies read whole stacks, which only tensors are.
    :func:`~speechforge.modules.inference_transform.optimize_for_cpu_inference` gives the
    layer its CPU inference form (:meth:`cpu_inference_form`): experts run core's fused oneDNN
    linear kernels (:mod:`speechforge.modules.fused_linear`) on oneDNN-layout copies of their
    weights, made once by a :class:`~speechforge.modules.fused_linear.WeightPacker` (an
    expert's few frames per call would otherwise pay a weight reorder per GEMM), remade when
    the weights change and dropped when the layer trains again.

    Expert load is counted while training: per expert, the (frame, expert) assignments the
    router made since the last :meth:`pop_step_counts` and since construction; the running total
    is saved with the weights (``_extra_state``) so a report can read it from a checkpoint.
    """

    #: the stacked (E, O, I) expert weights a quantizer may quantize (the router stays float)
    quantizable_weights = ("w_1", "w_gate", "w_2")

    def __init__(
        self,
        *,
        d_model: int,
        num_experts: int = 8,
        top_k: int = 2,
        hidden: int = 2048,
        activation: str = "swish",
        dropout: float = 0.1,
        gated: bool = False,
        bias: bool = True,
        capacity_factor: float | None = None,
        dispatch: str = "auto",
    ) -> None:
        """
        Args:
            d_model: input and output size D (from the parent).
            num_experts: E, dense FFNs to choose from.
            top_k: experts each frame is sent to (softmax over their logits mixes them).
            hidden: H, the hidden size of every expert.
            activation: relu, swish (silu) or gelu.
            dropout: on each expert's hidden activations, as in the dense FFN.
            gated: GLU experts, ``act(x w_1) * (x w_gate)``.
            bias: biases in the experts (the router never has one).
            capacity_factor: None keeps every assignment; a value c caps each expert at
                ceil(c * N * top_k / E) assignments per forward, dropping the rest (first
                choices are served before second choices, then in frame order). A frame that
                loses all its experts gets zeros, i.e. passes through the residual.
            dispatch: grouped, padded, or auto (see :data:`PADDED_MAX_WASTE`); a layer whose
                stacked weights a module stands in for always runs grouped.
        """
        super().__init__()
        if num_experts < 1:
            raise ConfigError(f"num_experts: must be at least 1, got {num_experts}")
        if not 1 <= top_k <= num_experts:
            raise ConfigError(f"top_k: must be between 1 and num_experts ({num_experts}), got {top_k}")
        if capacity_factor is not None and not capacity_factor > 0:
            raise ConfigError(f"capacity_factor: must be positive or null, got {capacity_factor}")
        if dispatch not in DISPATCHES:
            raise ConfigError(f"dispatch: must be one of {', '.join(DISPATCHES)}, got {dispatch!r}")
        self.num_experts = num_experts
        self.top_k = top_k
        self.hidden = hidden
        self.capacity_factor = capacity_factor
        self.dispatch = dispatch
        self.gate = nn.Linear(d_model, num_experts, bias=False)
        self.w_1 = nn.Parameter(torch.empty(num_experts, hidden, d_model))
        self.b_1 = nn.Parameter(torch.empty(num_experts, hidden)) if bias else None
        self.w_gate = nn.Parameter(torch.empty(num_experts, hidden, d_model)) if gated else None
        self.b_gate = nn.Parameter(torch.empty(num_experts, hidden)) if gated and bias else None
        self.w_2 = nn.Parameter(torch.empty(num_experts, d_model, hidden))
        self.b_2 = nn.Parameter(torch.empty(num_experts, d_model)) if bias else None
        self.activation = make_activation(activation)
        self.dropout = Dropout(dropout)
        self.reset_parameters()
        self.router_state: RouterState | None = None
        self._packer: WeightPacker | None = None  # set by cpu_inference_form
        # rows: routed since the last pop, dropped since the last pop, routed in total
        self._counts = torch.zeros(3, num_experts, dtype=torch.long)

    def reset_parameters(self) -> None:
        """Each expert initialised like an ``nn.Linear`` of its shape (uniform in 1/sqrt(fan_in))."""
        for weight, bias in ((self.w_1, self.b_1), (self.w_gate, self.b_gate), (self.w_2, self.b_2)):
            if weight is None:
                continue
            bound = 1.0 / math.sqrt(weight.size(2))
            nn.init.uniform_(weight, -bound, bound)
            if bias is not None:
                nn.init.uniform_(bias, -bound, bound)

    def extra_repr(self) -> str:
        return (
            f"num_experts={self.num_experts}, top_k={self.top_k}, hidden={self.hidden}, "
            f"capacity_factor={self.capacity_factor}, dispatch={self.dispatch!r}"
        )

    # -- forward -------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """Args: x (B, T, D). Returns (B, T, D)."""
        if self.training and self._packer is not None:
            self._packer.release()
        flat = x.reshape(-1, x.size(-1))  # (N, D)
        num_frames = flat.size(0)
        logits = self.gate(flat)  # (N, E)
        top_logits, top_experts = logits.topk(self.top_k, dim=-1)  # (N, k)
        # assignment a = slot * N + frame: within an expert, first choices sort before second ones
        assigned = top_experts.t().reshape(-1)  # (k * N,)
        order = assigned.argsort(stable=True)  # (k * N,) assignments grouped by expert
        counts = torch.bincount(assigned, minlength=self.num_experts)  # (E,)
        self._record(logits, counts)
        if self.capacity_factor is not None:
            order, counts = self._apply_capacity(order, counts, num_frames)
        sizes = counts.tolist()
        expert_in = flat.index_select(0, order % num_frames if self.top_k > 1 else order)  # (M, D)
        if self._pads(sizes, order.size(0), x.device):
            expert_out = self._run_padded(expert_in, counts, max(sizes))
        else:
            expert_out = self._run_grouped(expert_in, sizes)
        return self._combine(expert_out.to(flat.dtype), order, top_logits, num_frames).view_as(x)

    def _pads(self, sizes: list[int], rows: int, device: torch.device) -> bool:
        """Whether to run the padded batched GEMM rather than one GEMM pair per expert."""
        if self._stand_ins():
            return False
        if self.dispatch != "auto":
            return self.dispatch == "padded"
        return device.type != "cpu" and max(sizes) * self.num_experts <= (1 + PADDED_MAX_WASTE) * rows

    def _apply_capacity(self, order: Tensor, counts: Tensor, num_frames: int) -> tuple[Tensor, Tensor]:
        """Keep at most ``capacity`` assignments per expert.

        Args: order (k * N,) assignments sorted by expert; counts (E,).
        Returns: the kept assignments (M,), still grouped, and their counts (E,).
        """
        capacity = math.ceil(self.capacity_factor * num_frames * self.top_k / self.num_experts)
        starts = torch.cumsum(counts, 0) - counts  # (E,)
        expert_of = torch.repeat_interleave(torch.arange(self.num_experts, device=counts.device), counts)
        rank = torch.arange(order.size(0), device=order.device) - starts[expert_of]  # place in group
        kept = counts.clamp(max=capacity)
        if self.training:
            self._counts[1] += counts - kept
        return order[rank < capacity], kept

    def cpu_inference_form(self) -> MoEFeedForward:
        """This layer with packed oneDNN expert kernels for CPU inference (called by
        :func:`~speechforge.modules.inference_transform.optimize_for_cpu_inference`, which
        works on a copy of the model); a subclass, which may compute its weights otherwise,
        and a layer whose stacked weights a module stands in for stay as they are."""
        if type(self) is MoEFeedForward and not self._stand_ins():
            self._packer = WeightPacker()
        return self

    def _stand_ins(self) -> bool:
        """Whether a module stands in for any stacked expert weight (see the class docstring)."""
        return any(name in self._modules for name in self.quantizable_weights)

    def expert(self, x: Tensor, e: int, weights: ExpertWeights | None = None) -> Tensor:
        """Expert ``e`` on its rows, exactly core's dense FFN: (n, D) -> (n, D).

        Args: x (n, D); e: the expert; weights: the stacked (w_1, b_1, w_gate, b_gate, w_2,
            b_2) that this forward read (:meth:`expert_weights`), or None to read them.
        """
        w_1, b_1, w_gate, b_gate, w_2, b_2 = self.expert_weights() if weights is None else weights
        if self._packer is None:
            h = self.activation(F.linear(x, w_1[e], _row(b_1, e)))  # (n, H)
            if w_gate is not None:
                h = h * F.linear(x, w_gate[e], _row(b_gate, e))
            return F.linear(self.dropout(h), w_2[e], _row(b_2, e))
        packed = self._packer.pack(x, (w_1, w_gate, w_2), x.size(0))
        if packed is not None:
            w_1, w_gate, w_2 = packed
        h = linear(x, w_1[e], _row(b_1, e), self.activation)  # (n, H)
        if w_gate is not None:
            h = h * linear(x, w_gate[e], _row(b_gate, e))
        return linear(self.dropout(h), w_2[e], _row(b_2, e))

    def expert_weights(self) -> ExpertWeights:
        """The stacked expert weights and biases, each read once (a parametrized one is
        computed once per forward, not once per expert)."""
        return self.w_1, self.b_1, self.w_gate, self.b_gate, self.w_2, self.b_2

    def _run_grouped(self, expert_in: Tensor, sizes: list[int]) -> Tensor:
        """One GEMM pair per expert on its contiguous rows.

        Args: expert_in (M, D) rows sorted by expert; sizes: rows per expert.
        Returns: (M, D) (bf16 under autocast).
        """
        weights = self.expert_weights()
        parts = [self.expert(rows, e, weights) for e, rows in enumerate(expert_in.split(sizes)) if rows.size(0)]
        if len(parts) > 1:
            return torch.cat(parts)
        return parts[0] if parts else expert_in

    def _run_padded(self, expert_in: Tensor, counts: Tensor, largest: int) -> Tensor:
        """All experts as one batched GEMM pair over groups zero-padded to ``largest`` rows.

        Args: expert_in (M, D) rows sorted by expert; counts (E,) rows per expert.
        Returns: (M, D).
        """
        rows = expert_in.size(0)
        expert_of = torch.repeat_interleave(torch.arange(self.num_experts, device=counts.device), counts)
        starts = torch.cumsum(counts, 0) - counts  # (E,)
        slots = expert_of * largest + torch.arange(rows, device=counts.device) - starts[expert_of]  # (M,)
        padded = expert_in.new_zeros(self.num_experts * largest, expert_in.size(1))
        padded = padded.index_copy(0, slots, expert_in).view(self.num_experts, largest, -1)  # (E, C, D)
        w_1, b_1, w_gate, b_gate, w_2, b_2 = self.expert_weights()
        h = self.activation(_batched_linear(padded, w_1, b_1))  # (E, C, H)
        if w_gate is not None:
            h = h * _batched_linear(padded, w_gate, b_gate)
        out = _batched_linear(self.dropout(h), w_2, b_2)  # (E, C, D)
        return out.view(self.num_experts * largest, -1).index_select(0, slots)

    def _combine(self, expert_out: Tensor, order: Tensor, top_logits: Tensor, num_frames: int) -> Tensor:
        """Gather every frame's k expert outputs back into frame order and mix them.

        A gather, not a scatter-add: each assignment knows its row, so no two writes meet and
        the result is deterministic. Dropped assignments read a zero row.

        Args: expert_out (M, D) sorted by expert; order (M,) their assignment ids (slot * N +
            frame); top_logits (N, k) the selected router logits.
        Returns: (N, D).
        """
        rows, assignments = expert_out.size(0), self.top_k * num_frames
        if rows < assignments:  # capacity dropped some
            expert_out = torch.cat([expert_out, expert_out.new_zeros(1, expert_out.size(1))])
            row_of = torch.full((assignments,), rows, dtype=order.dtype, device=order.device)
        else:
            row_of = torch.empty_like(order)
        row_of[order] = torch.arange(rows, device=order.device)  # (k * N,)
        per_slot = expert_out.index_select(0, row_of).view(self.top_k, num_frames, -1)  # (k, N, D)
        if self.top_k == 1 and not torch.is_grad_enabled():
            return per_slot[0]  # the weight of a single expert is 1
        # top-1 training keeps the constant weight 1 so the router stays in the graph (DDP)
        weights = torch.softmax(top_logits, dim=-1, dtype=torch.float32).to(per_slot.dtype)  # (N, k)
        return (per_slot * weights.t().unsqueeze(2)).sum(0)

    # -- statistics and auxiliary losses -----------------------------------------------------
    def _record(self, logits: Tensor, counts: Tensor) -> None:
        """Keep this forward's routing; count expert load while training."""
        if self.training:
            if self._counts.device != counts.device:
                self._counts = self._counts.to(counts.device)
            self._counts[0] += counts
            self._counts[2] += counts
            self.router_state = RouterState(logits, counts, self.top_k)
        else:
            self.router_state = RouterState(logits.detach(), counts, self.top_k)

    def pop_step_counts(self) -> tuple[list[int], list[int]]:
        """Assignments routed to and dropped by each expert since the last call; resets both."""
        routed, dropped = self._counts[0].tolist(), self._counts[1].tolist()
        self._counts[:2].zero_()
        return routed, dropped

    @property
    def total_counts(self) -> list[int]:
        """Assignments routed to each expert in all training forwards so far."""
        return self._counts[2].tolist()

    def clear_router_state(self) -> None:
        """Drop the kept routing (and the graph it holds) once a step is done."""
        self.router_state = None

    def get_extra_state(self) -> Tensor:
        return self._counts[2].cpu()

    def set_extra_state(self, state: Tensor) -> None:
        self._counts = torch.zeros_like(self._counts)
        self._counts[2] = state.round().long() if state.is_floating_point() else state

    def _state(self) -> RouterState:
        if self.router_state is None:
            raise RuntimeError(
                "MoE layer has no routing to score: run the model forward before the MoE losses "
                "(the after_train_step hook clears it)"
            )
        return self.router_state

    def balance_loss(self) -> Tensor:
        """Switch Transformer load-balancing loss of the latest forward: E * sum_e f_e * P_e,
        f_e the fraction of assignments routed to e, P_e the mean router probability of e;
        1.0 when perfectly balanced."""
        state = self._state()
        fraction = state.counts.to(torch.float32) / (state.logits.size(0) * state.top_k)  # (E,)
        probability = torch.softmax(state.logits, dim=-1, dtype=torch.float32).mean(0)  # (E,)
        return self.num_experts * (fraction * probability).sum()

    def z_loss(self) -> Tensor:
        """ST-MoE router z-loss of the latest forward: mean squared logsumexp of the logits."""
        logits = self._state().logits.float()
        return torch.logsumexp(logits, dim=-1).square().mean()


def _row(bias: Tensor | None, e: int) -> Tensor | None:
    return None if bias is None else bias[e]


def _batched_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """x (E, C, I) @ weight (E, O, I)^T + bias (E, O), per expert."""
    weight = weight.transpose(1, 2)  # (E, I, O), a view
    return torch.bmm(x, weight) if bias is None else torch.baddbmm(bias.unsqueeze(1), x, weight)
