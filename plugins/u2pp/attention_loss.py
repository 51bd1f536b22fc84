"""The attention-decoder loss of U2/U2++, registered as ``loss`` ``attention``.

Combined with core's ``ctc`` loss through the weighted ``losses:`` list; WeNet's
``ctc_weight: 0.3`` is ``[{type: ctc, weight: 0.3}, {type: attention, weight: 0.7}]``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from speechforge.errors import ConfigError
from speechforge.interfaces import Loss, LossInputs, LossOutput
from speechforge.modules.mask import padding_mask
from speechforge.registry import current_path
from speechforge_plugins.u2pp.attention_decoder import AttentionDecoder
from speechforge_plugins.u2pp.label_smoothing_loss import LabelSmoothingLoss
from speechforge_plugins.u2pp.targets import IGNORE_ID, add_sos_eos, reverse_pad_list


class AttentionLoss(Loss):
    """``(1 - reverse_weight) * l2r + reverse_weight * r2l`` label-smoothed KL losses.

    Keys: ``lsm_weight`` (label smoothing), ``reverse_weight`` (needs a ``bitransformer``
    decoder when > 0), ``length_normalized`` (divide by tokens instead of utterances),
    ``decoder`` (which of several attention decoders to train).

    Reports the teacher-forced token accuracy of the left-to-right decoder as scalar ``acc``
    (and of the right-to-left one as ``acc_r2l`` when ``reverse_weight`` > 0): the share of
    target tokens and <eos> that are the argmax of their logits (WeNet's ``th_accuracy``).
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        lsm_weight: float = 0.1,
        reverse_weight: float = 0.0,
        length_normalized: bool = False,
        decoder: str | None = None,
    ) -> None:
        super().__init__()
        self.where = current_path() or "losses"
        self.decoder_name = decoder
        if not 0.0 <= reverse_weight <= 1.0:
            raise ConfigError(f"losses.reverse_weight: must be in [0, 1], got {reverse_weight}")
        if not 0.0 <= lsm_weight < 1.0:
            raise ConfigError(f"losses.lsm_weight: must be in [0, 1), got {lsm_weight}")
        self.reverse_weight = reverse_weight
        self.criterion = LabelSmoothingLoss(vocab_size, lsm_weight, normalize_length=length_normalized)

    def forward(self, inputs: LossInputs) -> LossOutput:
        decoder = inputs.model.find_decoder(AttentionDecoder, user=self.where, name=self.decoder_name)
        if self.reverse_weight > 0 and not decoder.bidirectional:
            raise ConfigError(
                f"losses.reverse_weight: {self.reverse_weight} needs a right-to-left decoder "
                f"(decoder: {{type: bitransformer}}); {type(decoder).__name__} has none"
            )
        sos = eos = inputs.model.sos_eos
        targets, lens = inputs.targets, inputs.target_lens
        ys_in, ys_out = add_sos_eos(targets, lens, sos, eos)  # (B, U + 1)
        r_ys_in = r_ys_out = None
        if self.reverse_weight > 0:
            r_ys_in, r_ys_out = add_sos_eos(reverse_pad_list(targets, lens), lens, sos, eos)
        memory_mask = padding_mask(inputs.encoder_lens, inputs.encoder_out.size(1)).unsqueeze(1)  # (B, 1, T)
        logits, r_logits = decoder(inputs.encoder_out, memory_mask, ys_in, lens + 1, r_ys_in)
        loss = self.criterion(logits, ys_out)
        scalars = {"acc": token_accuracy(logits, ys_out)}
        if r_logits is None:
            return LossOutput(loss, scalars)
        scalars["acc_r2l"] = token_accuracy(r_logits, r_ys_out)
        loss = (1.0 - self.reverse_weight) * loss + self.reverse_weight * self.criterion(r_logits, r_ys_out)
        return LossOutput(loss, scalars)


@torch.no_grad()
def token_accuracy(logits: Tensor, ys_out: Tensor) -> Tensor:
    """Share of the non-padding targets that are their row's argmax.

    Args: logits (N, U, V), ys_out (N, U) padded with IGNORE_ID. Returns: () float32.
    """
    valid = ys_out != IGNORE_ID  # (N, U)
    correct = (logits.argmax(dim=-1) == ys_out) & valid
    return correct.sum().float() / valid.sum().clamp(min=1).float()
