"""The ``asr`` task: frontend → encoder → the heads and decoders its losses need, trained on a
weighted sum of registered losses."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from speechforge.errors import ConfigError
from speechforge.interfaces import Decoder, Encoder, Frontend, LossInputs, LossOutput, Progress, Task
from speechforge.modules.ctc_head import CTCHead
from speechforge.registry import build_component

#: the decoder the model's shorthand ``decoder:`` key builds is known by this name
SHORTHAND_DECODER = "decoder"

D = TypeVar("D")


class ASRModel(Task):
    """Speech recognition model. Token 0 is the CTC blank; ``vocab_size - 1`` is <sos/eos> for
    attention decoders (WeNet's convention).

    Keys: ``frontend``, ``encoder``, ``losses`` (a list of loss mappings, each with a
    ``weight``), ``decoder`` (one decoder) or ``decoders`` (named ones: ``{attention: {...},
    transducer: {...}}``), ``ctc_head`` (true: build the CTC head even when no loss needs
    it; false: never; default: when a loss needs it, e.g. ``{type: ctc}``).

    The model holds only the parts its config asks for, so every parameter is trained and
    DDP runs with ``find_unused_parameters=False``. State-dict prefixes: ``ctc.``,
    ``decoder.`` (shorthand), ``decoders.<name>.``, ``losses.<name>.``.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        encoder: Mapping[str, Any],
        losses: Sequence[Mapping[str, Any]],
        frontend: Mapping[str, Any] | None = None,
        decoder: Mapping[str, Any] | None = None,
        decoders: Mapping[str, Mapping[str, Any]] | None = None,
        ctc_head: bool | None = None,
    ) -> None:
        super().__init__()
        if vocab_size < 2:
            raise ConfigError(f"vocab_size: must be at least 2 (blank + one token), got {vocab_size}")
        self.vocab_size = vocab_size
        self.frontend: Frontend = build_component("frontend", frontend or {"type": "fbank"}, "frontend")
        self.encoder: Encoder = build_component(
            "encoder", encoder, "encoder", input_dim=self.frontend.output_dim
        )
        built_losses, self.loss_weights = build_losses(losses, vocab_size, self.encoder.output_dim)
        # parts are assigned in the order of earlier versions, which fixes parameter order
        self.ctc: CTCHead | None = None
        if wants_ctc_head(ctc_head, built_losses):
            self.ctc = CTCHead(self.encoder.output_dim, vocab_size)
        if decoder is not None and decoders is not None:
            raise ConfigError("decoders: give decoder: (one decoder) or decoders: (named ones), not both")
        context = {"vocab_size": vocab_size, "encoder_dim": self.encoder.output_dim}
        self.decoder: Decoder | None = None
        if decoder is not None:
            self.decoder = build_component("decoder", decoder, "decoder", **context)
        self.decoders = nn.ModuleDict()
        for name, spec in checked_decoder_names(decoders).items():
            self.decoders[name] = build_component("decoder", spec, f"decoders.{name}", **context)
        self.losses = built_losses

    @property
    def sos_eos(self) -> int:
        return self.vocab_size - 1

    def named_decoders(self) -> dict[str, Decoder]:
        """The model's decoders by name; the ``decoder:`` shorthand's is named ``decoder``."""
        if self.decoder is not None:
            return {SHORTHAND_DECODER: self.decoder}
        return dict(self.decoders.items())

    def find_decoder(self, kind: type[D], *, user: str, name: str | None = None) -> D:
        """The decoder a loss or search needs.

        Args:
            kind: a base class, or a runtime-checkable Protocol that declares a capability.
            user: who asks, as errors start with it: a loss's config path (``"losses.1"``),
                a search's ``"decode method <name>"``.
            name: the caller's ``decoder: NAME`` key; needed only when the model holds
                several decoders of ``kind``.
        Raises: ConfigError when no decoder fits, when several do and ``name`` is None, or
            when ``name`` is not a decoder of ``kind``.
        """
        table = self.named_decoders()
        held = ", ".join(f"{n} ({type(d).__name__})" for n, d in table.items()) or "none"
        if name is not None:
            if name not in table:
                raise ConfigError(f"{user}: decoder: {name!r} is not a decoder of the model; it has {held}")
            if not isinstance(table[name], kind):
                raise ConfigError(
                    f"{user}: decoder: {name!r} is a {type(table[name]).__name__}, not of the kind "
                    f"{kind.__name__} that {user} needs"
                )
            return table[name]
        matches = [d for d in table.values() if isinstance(d, kind)]
        if not matches:
            raise ConfigError(
                f"{user} needs a decoder of kind {kind.__name__}; the model has {held} "
                f"(add one under decoder: or decoders:)"
            )
        if len(matches) > 1:
            names = ", ".join(n for n, d in table.items() if isinstance(d, kind))
            raise ConfigError(f"{user}: decoders {names} are each of kind {kind.__name__}; say which with decoder: NAME")
        return matches[0]

    def find_ctc_head(self, user: str) -> CTCHead:
        """The CTC head, or a ConfigError saying how to get one. ``user`` names the caller."""
        if self.ctc is None:
            raise ConfigError(f"{user} needs a CTC head: add {{type: ctc}} to losses (or ctc_head: true)")
        return self.ctc

    def encode(
        self, speech: Tensor, speech_lens: Tensor, chunk_size: int = 0, num_left_chunks: int = -1
    ) -> tuple[Tensor, Tensor]:
        """Args: speech (B, S) waveforms, speech_lens (B,). Returns (B, T, D), (B,)."""
        feats, feat_lens = self.frontend(speech, speech_lens)
        return self.encoder(feats, feat_lens, chunk_size, num_left_chunks)

    def forward(self, batch: Mapping[str, Tensor], progress: Progress | None = None) -> dict[str, Tensor]:
        """Args: batch with ``speech`` (B, S), ``speech_lens`` (B,), ``targets`` (B, U)
        padded with -1, ``target_lens`` (B,); ``progress`` reaches the losses. Returns ``loss``,
        each loss by name and each loss's extra scalars as ``<loss name>_<scalar>`` (detached,
        not in ``loss``)."""
        encoder_out, encoder_lens = self.encode(batch["speech"], batch["speech_lens"])
        inputs = LossInputs(self, encoder_out, encoder_lens, batch["targets"], batch["target_lens"], progress)
        parts: dict[str, Tensor] = {}
        scalars: dict[str, Tensor] = {}
        for name, loss in self.losses.items():
            out = loss(inputs)
            if isinstance(out, LossOutput):
                scalars.update({f"{name}_{key}": value.detach() for key, value in out.scalars.items()})
                out = out.loss
            parts[name] = out
        total = torch.stack([self.loss_weights[n] * v for n, v in parts.items()]).sum()
        return {"loss": total, **parts, **scalars}


def build_losses(
    specs: Sequence[Mapping[str, Any]], vocab_size: int, encoder_dim: int
) -> tuple[nn.ModuleDict, dict[str, float]]:
    """The ``losses:`` list as modules named by type (``ctc``, ``attention_1`` for a second
    ``attention``) and their weights."""
    if not specs:
        raise ConfigError("losses: empty; give at least one, e.g. [{type: ctc, weight: 1.0}]")
    losses = nn.ModuleDict()
    weights: dict[str, float] = {}
    for i, spec in enumerate(specs):
        spec = dict(spec)
        weight = float(spec.pop("weight", 1.0))
        name = str(spec.get("type"))
        if name in losses:
            name = f"{name}_{i}"
        losses[name] = build_component(
            "loss", spec, f"losses.{i}", vocab_size=vocab_size, encoder_dim=encoder_dim
        )
        weights[name] = weight
    return losses, weights


def wants_ctc_head(ctc_head: bool | None, losses: nn.ModuleDict) -> bool:
    """Whether the model builds a CTC head: ``ctc_head`` when given, else when a loss needs it."""
    if ctc_head is not None and not isinstance(ctc_head, bool):
        raise ConfigError(f"ctc_head: expected true, false or no key, got {ctc_head!r}")
    needing = [name for name, loss in losses.items() if loss.needs_ctc_head]
    if ctc_head is False and needing:
        raise ConfigError(f"ctc_head: false, but losses {', '.join(needing)} need a CTC head")
    return bool(ctc_head) or bool(needing)


def checked_decoder_names(decoders: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Mapping[str, Any]]:
    """The ``decoders:`` mapping, its names checked (they become state-dict prefixes)."""
    if decoders is None:
        return {}
    if not isinstance(decoders, Mapping) or not decoders:
        raise ConfigError(
            f"decoders: expected a mapping of names to decoder configs, e.g. "
            f"{{attention: {{type: transformer}}}}, got {decoders!r}"
        )
    for name in decoders:
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(f"decoders.{name}: a decoder name must be an identifier (letters, digits, _)")
    return dict(decoders)
