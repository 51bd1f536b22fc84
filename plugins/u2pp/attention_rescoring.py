"""Two-pass decoding of U2/U2++, registered as ``search`` ``attention_rescoring``: the CTC
prefix beam search proposes an n-best list, the attention decoders rescore it; and as
``attention_rescoring_lm``, where the n-best comes from the prefix beam search with the
experiment's n-gram LM fused in."""
from __future__ import annotations

import torch
from torch import Tensor

from speechforge.decode.ctc_prefix_beam_search import prefix_beam_search
from speechforge.errors import ConfigError
from speechforge.interfaces import SearchMethod
from speechforge.lm.ngram_lm import NgramLM
from speechforge.lm.shallow_fusion import LMPrefixScore
from speechforge.modules.mask import padding_mask
from speechforge_plugins.u2pp.attention_decoder import AttentionDecoder
from speechforge_plugins.u2pp.targets import IGNORE_ID, add_sos_eos, reverse_pad_list

#: right-to-left weight of bidirectional decoders when none is given (WeNet's U2++ recipes)
DEFAULT_REVERSE_WEIGHT = 0.5


class AttentionRescoring(SearchMethod):
    """Picks the hypothesis with the best
    ``ctc_weight * ctc + (1 - reverse_weight) * l2r + reverse_weight * r2l`` (WeNet's
    semantics), where ctc is the prefix beam search's log-probability and l2r / r2l are the
    teacher-forced log-probabilities of the tokens and <eos> under each decoder.

    Keys: ``beam_size`` (n-best size), ``ctc_weight``, ``reverse_weight`` (default 0.5 with a
    ``bitransformer`` decoder, 0 with a ``transformer`` one, where a positive value is an
    error), ``blank_id``, ``decoder`` (which of several attention decoders rescores).
    """

    #: the registry name, for error messages (``decode.options.NAME.key``)
    method = "attention_rescoring"

    def __init__(
        self,
        *,
        beam_size: int = 10,
        ctc_weight: float = 0.3,
        reverse_weight: float | None = None,
        blank_id: int = 0,
        decoder: str | None = None,
    ) -> None:
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        if reverse_weight is not None and not 0.0 <= reverse_weight <= 1.0:
            raise ConfigError(f"decode.options.{self.method}.reverse_weight: must be in [0, 1], got {reverse_weight}")
        self.beam_size = beam_size
        self.ctc_weight = ctc_weight
        self.reverse_weight = reverse_weight
        self.blank_id = blank_id
        self.decoder_name = decoder

    def resolved_reverse_weight(self, decoder: AttentionDecoder) -> float:
        if self.reverse_weight is None:
            return DEFAULT_REVERSE_WEIGHT if decoder.bidirectional else 0.0
        if self.reverse_weight > 0 and not decoder.bidirectional:
            raise ConfigError(
                f"decode.options.{self.method}.reverse_weight: {self.reverse_weight} needs a right-to-left decoder; "
                f"{type(decoder).__name__} has none"
            )
        return self.reverse_weight

    @torch.no_grad()
    def __call__(self, model, encoder_out: Tensor, encoder_lens: Tensor) -> list[list[int]]:
        user = f"decode method {self.method}"
        decoder = model.find_decoder(AttentionDecoder, user=user, name=self.decoder_name)
        reverse_weight = self.resolved_reverse_weight(decoder)
        log_probs = model.find_ctc_head(user)(encoder_out)  # (B, T, V)
        results = []
        for i in range(encoder_out.size(0)):
            length = int(encoder_lens[i])
            nbest = self.first_pass(log_probs[i, :length])
            hyps = [list(tokens) for tokens, _ in nbest]
            first_scores = torch.tensor([score for _, score in nbest])
            memory = encoder_out[i : i + 1, :length]  # (1, T_i, D)
            att_scores = attention_scores(decoder, memory, hyps, model.sos_eos, reverse_weight)
            total = self.ctc_weight * first_scores + att_scores.cpu()
            results.append(hyps[int(total.argmax())])
        return results

    def first_pass(self, log_probs: Tensor) -> list[tuple[tuple[int, ...], float]]:
        """The n-best of one utterance with the score ``ctc_weight`` multiplies: here the CTC
        log-probability of the prefix beam search. Args: log_probs (T, V) of its valid frames."""
        return prefix_beam_search(log_probs, self.beam_size, self.blank_id)


class AttentionRescoringLM(AttentionRescoring):
    """Attention rescoring of the n-best of ``ctc_prefix_beam_search_lm``: the first pass
    ranks prefixes by CTC plus the experiment's n-gram LM (``lm_weight`` times its
    log-probability plus ``lm_bonus`` per token), and the rescored score is
    ``ctc_weight * (ctc + lm) + (1 - reverse_weight) * l2r + reverse_weight * r2l``, lm the
    LM's score of the whole hypothesis, end of sentence included. The first-pass score is
    weighted as one, as WeNet weighs a decoding graph's score (acoustic and LM) when it
    rescores; with ``lm_weight`` and ``lm_bonus`` 0 it is ``attention_rescoring``.

    Keys: those of ``attention_rescoring`` plus ``lm_weight`` (0.5) and ``lm_bonus`` (1.0),
    the defaults of ``ctc_prefix_beam_search_lm``; ``lm`` comes from the recognizer
    (``EXP/lm/lm.arpa``).
    """

    method = "attention_rescoring_lm"

    def __init__(
        self,
        *,
        lm: NgramLM | None = None,
        beam_size: int = 10,
        ctc_weight: float = 0.3,
        reverse_weight: float | None = None,
        lm_weight: float = 0.5,
        lm_bonus: float = 1.0,
        blank_id: int = 0,
        decoder: str | None = None,
    ) -> None:
        if lm is None:
            raise ConfigError(
                f"decode: {self.method} needs the experiment's language model EXP/lm/lm.arpa: "
                "set lm.order in the config and run `speechforge lm` (recipe stage 3)"
            )
        super().__init__(beam_size=beam_size, ctc_weight=ctc_weight, reverse_weight=reverse_weight, blank_id=blank_id, decoder=decoder)
        self.lm = lm
        self.lm_weight = lm_weight
        self.lm_bonus = lm_bonus

    def first_pass(self, log_probs: Tensor) -> list[tuple[tuple[int, ...], float]]:
        """The n-best of ``ctc_prefix_beam_search_lm`` with CTC plus LM score each."""
        fusion = LMPrefixScore(self.lm, self.lm_weight, self.lm_bonus)
        nbest = prefix_beam_search(log_probs, self.beam_size, self.blank_id, fusion)
        return [(tokens, ctc + fusion.final(tokens)) for tokens, ctc in nbest]


def attention_scores(
    decoder: AttentionDecoder, memory: Tensor, hyps: list[list[int]], sos_eos: int, reverse_weight: float
) -> Tensor:
    """``(1 - reverse_weight) * l2r + reverse_weight * r2l`` log-probability of each hypothesis
    of one utterance, <eos> included.

    Args: memory (1, T, D) of the utterance; hyps N token lists.
    Returns: (N,) float32.
    """
    device = memory.device
    lens = torch.tensor([len(h) for h in hyps], device=device)
    ys = torch.full((len(hyps), max(1, int(lens.max()))), IGNORE_ID, dtype=torch.long, device=device)
    for row, hyp in enumerate(hyps):
        ys[row, : len(hyp)] = torch.tensor(hyp, dtype=torch.long)
    ys_in, ys_out = add_sos_eos(ys, lens, sos_eos, sos_eos)  # (N, U + 1)
    r_ys_in = r_ys_out = None
    if reverse_weight > 0:
        r_ys_in, r_ys_out = add_sos_eos(reverse_pad_list(ys, lens), lens, sos_eos, sos_eos)
    memory_mask = padding_mask(torch.tensor([memory.size(1)], device=device), memory.size(1)).unsqueeze(1)
    logits, r_logits = decoder(memory, memory_mask, ys_in, lens + 1, r_ys_in)
    scores = _sequence_logp(logits, ys_out)
    if r_logits is None or reverse_weight == 0:
        return scores
    return (1.0 - reverse_weight) * scores + reverse_weight * _sequence_logp(r_logits, r_ys_out)


def _sequence_logp(logits: Tensor, ys_out: Tensor) -> Tensor:
    """Sum of log-probabilities of ``ys_out`` (N, U), ignoring padding. Args: logits (N, U, V)."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    picked = log_probs.gather(-1, ys_out.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (N, U)
    return picked.masked_fill(ys_out == IGNORE_ID, 0.0).sum(dim=-1)
