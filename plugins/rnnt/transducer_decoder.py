"""The transducer decoder, registered as ``decoder`` ``transducer``: a registered predictor and
joiner, plus (for the ``pruned_rnnt`` loss) the trivial joiner's two vocabulary projections."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from speechforge.interfaces import Decoder
from speechforge.registry import build_component
from speechforge_plugins.rnnt.joiner import Joiner
from speechforge_plugins.rnnt.predictor import Predictor, PredictorState


class TransducerDecoder(Decoder):
    """``{type: transducer, predictor: {type: lstm | stateless, ...}, joiner: {...},
    simple_projections: bool}``.

    Token 0 is the blank (the same id as CTC's), also the predictor's start symbol.
    ``simple_projections`` adds ``simple_am_proj`` (encoder_dim → V) and ``simple_lm_proj``
    (P → V), the trivial joiner whose loss chooses the prune ranges (icefall's names); the
    ``pruned_rnnt`` loss needs them and the model holds them only when asked, so that every
    parameter trains.
    """

    blank_id = 0
    #: used only by the pruned loss; a packed export leaves them out
    training_only_modules = ("simple_am_proj", "simple_lm_proj")

    def __init__(
        self,
        *,
        vocab_size: int,
        encoder_dim: int,
        predictor: Mapping[str, Any],
        joiner: Mapping[str, Any] | None = None,
        simple_projections: bool = False,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.predictor: Predictor = build_component("predictor", predictor, "predictor", vocab_size=vocab_size)
        self.joiner: Joiner = build_component(
            "joiner", joiner or {"type": "linear"}, "joiner",
            encoder_dim=encoder_dim, predictor_dim=self.predictor.output_dim, vocab_size=vocab_size,
        )  # fmt: skip
        self.simple_am_proj = nn.Linear(encoder_dim, vocab_size) if simple_projections else None
        self.simple_lm_proj = nn.Linear(self.predictor.output_dim, vocab_size) if simple_projections else None

    def forward(self, tokens: Tensor, state: PredictorState | None = None) -> tuple[Tensor, PredictorState]:
        """The predictor through the joiner's predictor projection.

        Args: tokens (N, U); state of the predictor or None. Returns (N, U, J) and the state.
        """
        out, state = self.predictor(tokens, state)
        return self.joiner.predictor_proj(out), state
