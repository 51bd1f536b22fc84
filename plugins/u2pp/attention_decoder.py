"""The contract the ``attention`` loss and the attention searches rely on, shared by the
``transformer`` and ``bitransformer`` decoders."""
from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

from torch import Tensor

from speechforge.interfaces import Decoder
from speechforge_plugins.u2pp.decoder_state import DecoderState


class AttentionDecoder(Decoder):
    """An autoregressive decoder attending to encoder output, left to right and, when
    ``bidirectional``, right to left too.

    ``memory`` may hold fewer utterances than there are token sequences: N sequences over B
    utterances (N a multiple of B) are read as N / B consecutive hypotheses per utterance,
    so beams and n-best lists never copy the encoder output.
    """

    bidirectional: ClassVar[bool] = False

    @abstractmethod
    def forward(
        self,
        memory: Tensor,
        memory_mask: Tensor,
        ys_in: Tensor,
        ys_in_lens: Tensor,
        r_ys_in: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced logits.

        Args:
            memory: (B, T, D) encoder output; memory_mask (B, 1, T) bool, True = valid.
            ys_in: (N, U) <sos> + tokens, padded with <eos>; ys_in_lens (N,).
            r_ys_in: (N, U) <sos> + reversed tokens, for the right-to-left branch, or None.
        Returns: logits (N, U, V) left to right, and (N, U, V) right to left when
            ``r_ys_in`` was given (else None).
        """

    @abstractmethod
    def step(
        self, memory: Tensor, memory_mask: Tensor, tokens: Tensor, state: DecoderState | None
    ) -> tuple[Tensor, DecoderState]:
        """One left-to-right step.

        Args:
            memory: (B, T, D); memory_mask (B, 1, T).
            tokens: (N,) the latest token of each hypothesis (<sos> at the first step).
            state: what the previous step returned, None at the first step.
        Returns: log-probabilities of the next token (N, V) in float32, and the new state.
        """

