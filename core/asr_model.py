"""The ``asr`` task: frontend → encoder → CTC head (+ optional decoder), trained on a
weighted sum of registered losses."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from speechforge.errors import ConfigError
from speechforge.interfaces import Decoder, Encoder, Frontend, LossInputs, Progress, Task
from speechforge.modules.ctc_head import CTCHead
from speechforge.registry import build_component


class ASRModel(Task):
    """Speech recognition model. Token 0 is the CTC blank; ``vocab_size - 1`` is <sos/eos> for
    attention decoders (WeNet's convention).

    Keys: ``frontend``, ``encoder``, ``losses`` (a list of loss mappings, each with a
    ``weight``), ``decoder`` (optional).
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        encoder: Mapping[str, Any],
        losses: Sequence[Mapping[str, Any]],
        frontend: Mapping[str, Any] | None = None,
        decoder: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if vocab_size < 2:
            raise ConfigError(f"vocab_size: must be at least 2 (blank + one token), got {vocab_size}")
        self.vocab_size = vocab_size
        self.frontend: Frontend = build_component("frontend", frontend or {"type": "fbank"}, "frontend")
        self.encoder: Encoder = build_component(
            "encoder", encoder, "encoder", input_dim=self.frontend.output_dim
        )
        self.ctc = CTCHead(self.encoder.output_dim, vocab_size)
        self.decoder: Decoder | None = None
        if decoder is not None:
            self.decoder = build_component(
                "decoder", decoder, "decoder", vocab_size=vocab_size, encoder_dim=self.encoder.output_dim
            )
        if not losses:
            raise ConfigError("losses: empty; give at least one, e.g. [{type: ctc, weight: 1.0}]")
        self.losses = nn.ModuleDict()
        self.loss_weights: dict[str, float] = {}
        for i, spec in enumerate(losses):
            spec = dict(spec)
            weight = float(spec.pop("weight", 1.0))
            name = str(spec.get("type"))
            if name in self.losses:
                name = f"{name}_{i}"
            self.losses[name] = build_component(
                "loss", spec, f"losses.{i}", vocab_size=vocab_size, encoder_dim=self.encoder.output_dim
            )
            self.loss_weights[name] = weight

    @property
    def sos_eos(self) -> int:
        return self.vocab_size - 1

    def encode(
        self, speech: Tensor, speech_lens: Tensor, chunk_size: int = 0, num_left_chunks: int = -1
    ) -> tuple[Tensor, Tensor]:
        """Args: speech (B, S) waveforms, speech_lens (B,). Returns (B, T, D), (B,)."""
        feats, feat_lens = self.frontend(speech, speech_lens)
        return self.encoder(feats, feat_lens, chunk_size, num_left_chunks)

    def forward(self, batch: Mapping[str, Tensor], progress: Progress | None = None) -> dict[str, Tensor]:
        """Args: batch with ``speech`` (B, S), ``speech_lens`` (B,), ``targets`` (B, U)
        padded with -1, ``target_lens`` (B,); ``progress`` reaches the losses. Returns
        ``loss`` and each weighted part."""
        encoder_out, encoder_lens = self.encode(batch["speech"], batch["speech_lens"])
        inputs = LossInputs(self, encoder_out, encoder_lens, batch["targets"], batch["target_lens"], progress)
        parts = {name: loss(inputs) for name, loss in self.losses.items()}
        total = torch.stack([self.loss_weights[n] * v for n, v in parts.items()]).sum()
        return {"loss": total, **parts}
