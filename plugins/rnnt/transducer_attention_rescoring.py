"""Two-pass decoding for a model with a transducer and an attention decoder, registered as
``search`` ``transducer_attention_rescoring``: the modified beam search proposes an n-best list,
the attention decoder rescores it (the transducer's counterpart of U2++'s attention rescoring)."""
from __future__ import annotations

import torch
from torch import Tensor

from speechforge.errors import ConfigError
from speechforge.interfaces import SearchMethod
from speechforge_plugins.rnnt.transducer_modified_beam_search import TransducerModifiedBeamSearch
from speechforge_plugins.u2pp.attention_decoder import AttentionDecoder
from speechforge_plugins.u2pp.attention_rescoring import attention_scores

USER = "decode method transducer_attention_rescoring"


class TransducerAttentionRescoring(SearchMethod):
    """Picks the n-best hypothesis with the best ``transducer_weight * transducer +
    (1 - reverse_weight) * l2r + reverse_weight * r2l``: the modified beam search's
    log-probability and the attention decoder's teacher-forced log-probabilities (<eos>
    included).

    Keys: ``beam_size`` (n-best size), ``transducer_weight``, ``reverse_weight`` (needs a
    ``bitransformer`` decoder when > 0), ``decoder`` and ``attention_decoder`` (which of
    several transducer / attention decoders).
    """

    def __init__(
        self,
        *,
        beam_size: int = 4,
        transducer_weight: float = 0.5,
        reverse_weight: float = 0.0,
        decoder: str | None = None,
        attention_decoder: str | None = None,
    ) -> None:
        if not 0.0 <= reverse_weight <= 1.0:
            raise ConfigError(f"decode.options.transducer_attention_rescoring.reverse_weight: must be in [0, 1], got {reverse_weight}")
        self.first_pass = TransducerModifiedBeamSearch(beam_size=beam_size, decoder=decoder)
        self.transducer_weight, self.reverse_weight = transducer_weight, reverse_weight
        self.attention_decoder = attention_decoder

    @torch.no_grad()
    def __call__(self, model, encoder_out: Tensor, encoder_lens: Tensor) -> list[list[int]]:
        attention = model.find_decoder(AttentionDecoder, user=USER, name=self.attention_decoder)
        if self.reverse_weight > 0 and not attention.bidirectional:
            raise ConfigError(
                f"decode.options.transducer_attention_rescoring.reverse_weight: {self.reverse_weight} needs a "
                f"right-to-left decoder; {type(attention).__name__} has none"
            )
        state = self.first_pass.step(model, self.first_pass.init(model, encoder_out.size(0)), encoder_out, encoder_lens)
        results = []
        for i, beam in enumerate(state.beams):
            nbest = beam.nbest()
            hyps = [tokens for tokens, _ in nbest]
            memory = encoder_out[i : i + 1, : int(encoder_lens[i])]  # (1, T_i, D)
            second = attention_scores(attention, memory, hyps, model.sos_eos, self.reverse_weight).cpu()
            total = self.transducer_weight * torch.tensor([score for _, score in nbest]) + second
            results.append(hyps[int(total.argmax())])
        return results
