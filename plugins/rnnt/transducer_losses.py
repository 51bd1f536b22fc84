"""The transducer losses of the ``loss`` kind: ``rnnt`` (the full loss, the joiner on every
(t, u)) and ``pruned_rnnt`` (k2's simple + pruned losses, the joiner inside the prune ranges)."""
from __future__ import annotations

import torch
from torch import Tensor

from speechforge.errors import ConfigError
from speechforge.interfaces import Loss, LossInputs, LossOutput
from speechforge.registry import current_path
from speechforge_plugins.rnnt import full_loss, k2_backend, pruned_transducer_loss
from speechforge_plugins.rnnt.lattice import make_boundary
from speechforge_plugins.rnnt.loss_warmup import transducer_loss_weights
from speechforge_plugins.rnnt.simple_loss import RNNT_TYPES
from speechforge_plugins.rnnt.transducer_decoder import TransducerDecoder


def _choice(where: str, key: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"{where}.{key}: must be one of {', '.join(allowed)}, got {value!r}")
    return value


def predictor_inputs(targets: Tensor, blank_id: int) -> tuple[Tensor, Tensor]:
    """Blank-prefixed predictor input (B, U+1) and the symbols (B, U), padding (-1) made blank
    (the lengths keep it out of every score)."""
    symbols = targets.masked_fill(targets < 0, blank_id)
    start = torch.full_like(symbols[:, :1], blank_id)
    return torch.cat((start, symbols), dim=1), symbols


class RNNTLoss(Loss):
    """The full transducer loss, averaged over utterances. Keys: ``backend`` (``torchaudio``:
    torchaudio's fused kernel, ``native``: this plugin's lattice recursion), ``decoder`` (which
    of several transducer decoders)."""

    def __init__(self, *, backend: str = "torchaudio", decoder: str | None = None) -> None:
        super().__init__()
        self.where = current_path() or "losses"
        self.backend = _choice(self.where, "backend", backend, full_loss.BACKENDS)
        self.decoder_name = decoder

    def forward(self, inputs: LossInputs) -> Tensor:
        decoder = inputs.model.find_decoder(TransducerDecoder, user=self.where, name=self.decoder_name)
        tokens, symbols = predictor_inputs(inputs.targets, decoder.blank_id)
        predicted, _ = decoder(tokens)  # (B, U+1, J)
        am = decoder.joiner.encoder_proj(inputs.encoder_out)  # (B, T, J)
        logits = decoder.joiner(am.unsqueeze(2), predicted.unsqueeze(1))  # (B, T, U+1, V)
        return full_loss.rnnt_loss(
            logits, symbols, inputs.encoder_lens, inputs.target_lens, decoder.blank_id, "mean", self.backend
        )


class PrunedRNNTLoss(Loss):
    """k2's pruned RNN-T loss as icefall trains with it:
    ``simple_weight * simple + pruned_weight * pruned``, averaged over utterances, with
    icefall's warm-up weights (:mod:`~speechforge_plugins.rnnt.loss_warmup`) at
    ``f = min(progress.fraction / warmup, 1)`` (f = 1 outside training). Reports the
    unweighted parts as scalars ``simple`` and ``pruned``.

    Needs a ``transducer`` decoder with ``simple_projections: true``. With the one-token-per-frame
    topologies (``modified``, ``constrained``) an utterance with more tokens than frames has no
    alignment; it adds nothing to the loss (as icefall filters such utterances out).

    Keys: ``s_range``, ``rnnt_type`` (regular | modified | constrained), ``delay_penalty``,
    ``lm_only_scale``, ``am_only_scale``, ``simple_loss_scale`` (icefall's s), ``warmup`` (the
    run fraction where warm-up ends; icefall's 2000 of its usual ~40k steps is 0.05),
    ``backend`` (native | k2), ``decoder``.
    """

    def __init__(
        self,
        *,
        s_range: int = 5,
        rnnt_type: str = "regular",
        delay_penalty: float = 0.0,
        lm_only_scale: float = 0.25,
        am_only_scale: float = 0.0,
        simple_loss_scale: float = 0.5,
        warmup: float = 0.05,
        backend: str = "native",
        decoder: str | None = None,
    ) -> None:
        super().__init__()
        self.where = current_path() or "losses"
        if s_range < 1:
            raise ConfigError(f"{self.where}.s_range: must be >= 1, got {s_range}")
        if not 0.0 <= simple_loss_scale <= 1.0:
            raise ConfigError(f"{self.where}.simple_loss_scale: must be in [0, 1], got {simple_loss_scale}")
        if warmup <= 0.0:
            raise ConfigError(f"{self.where}.warmup: must be a run fraction > 0, got {warmup}")
        self.rnnt_type = _choice(self.where, "rnnt_type", rnnt_type, RNNT_TYPES)
        self.backend = _choice(self.where, "backend", backend, pruned_transducer_loss.BACKENDS)
        if backend == "k2" and not k2_backend.k2_available():
            raise ConfigError(
                f"{self.where}.backend: k2 is not importable here (pip install k2, built for this torch); "
                f"backend native computes the same losses"
            )
        self.s_range, self.delay_penalty = s_range, delay_penalty
        self.lm_only_scale, self.am_only_scale = lm_only_scale, am_only_scale
        self.simple_loss_scale, self.warmup = simple_loss_scale, warmup
        self.decoder_name = decoder

    def weights(self, inputs: LossInputs) -> tuple[float, float]:
        """(simple_weight, pruned_weight) at the batch's point of the run."""
        fraction = 1.0 if inputs.progress is None else min(inputs.progress.fraction / self.warmup, 1.0)
        return transducer_loss_weights(fraction, self.simple_loss_scale)

    def forward(self, inputs: LossInputs) -> LossOutput:
        decoder = inputs.model.find_decoder(TransducerDecoder, user=self.where, name=self.decoder_name)
        if decoder.simple_am_proj is None or decoder.simple_lm_proj is None:
            raise ConfigError(f"{self.where}: pruned_rnnt needs the decoder's simple_projections: true")
        encoder_out, frames = inputs.encoder_out, inputs.encoder_lens
        if inputs.targets.size(1) > encoder_out.size(1):
            raise ConfigError(
                f"{self.where}: pruned_rnnt needs at most one token per encoder frame (k2's S <= T); this batch has "
                f"{inputs.targets.size(1)} tokens for {encoder_out.size(1)} frames (a lower subsampling, or shorter tokens)"
            )
        tokens, symbols = predictor_inputs(inputs.targets, decoder.blank_id)
        target_lens, kept = inputs.target_lens, None
        if self.rnnt_type != "regular":  # one token per frame: more tokens than frames has no alignment
            kept = inputs.target_lens <= frames  # (B,)
            target_lens = inputs.target_lens.masked_fill(~kept, 0)
        predicted, _ = decoder.predictor(tokens)  # (B, U+1, P)
        parts = pruned_transducer_loss.pruned_transducer_loss(
            decoder.simple_am_proj(encoder_out), decoder.simple_lm_proj(predicted),
            decoder.joiner.encoder_proj(encoder_out), decoder.joiner.predictor_proj(predicted), decoder.joiner,
            symbols, make_boundary(frames, target_lens),
            s_range=self.s_range, rnnt_type=self.rnnt_type, delay_penalty=self.delay_penalty,
            lm_only_scale=self.lm_only_scale, am_only_scale=self.am_only_scale, blank=decoder.blank_id,
            reduction="none", backend=self.backend,
        )  # fmt: skip
        batch = encoder_out.size(0)
        simple, pruned = parts.simple, parts.pruned  # (B,)
        if kept is not None:
            simple, pruned = simple * kept, pruned * kept
        simple, pruned = simple.sum() / batch, pruned.sum() / batch
        simple_weight, pruned_weight = self.weights(inputs)
        return LossOutput(simple_weight * simple + pruned_weight * pruned, {"simple": simple, "pruned": pruned})
