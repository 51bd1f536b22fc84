"""Autoregressive beam search over the left-to-right attention decoder, registered as
``search`` ``attention`` (WeNet's ``attention_beam_search``)."""
from __future__ import annotations

import torch
from torch import Tensor

from speechforge.interfaces import SearchMethod
from speechforge.modules.mask import padding_mask
from speechforge_plugins.u2pp.attention_decoder import AttentionDecoder


class AttentionBeamSearch(SearchMethod):
    """All utterances and all their beams advance together, one decoder step per token, with
    the decoder's self-attention cache reordered as beams are chosen. A beam that produced
    <eos> is carried on unchanged; the search stops when every beam ended or after as many
    steps as the longest encoder output. Keys: ``beam_size``, ``length_penalty`` (scores are
    divided by length ** penalty before the final choice; 0 = none, as in WeNet), ``decoder``
    (which of several attention decoders searches)."""

    def __init__(self, *, beam_size: int = 10, length_penalty: float = 0.0, decoder: str | None = None) -> None:
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        self.beam_size = beam_size
        self.length_penalty = length_penalty
        self.decoder_name = decoder

    @torch.no_grad()
    def __call__(self, model, encoder_out: Tensor, encoder_lens: Tensor) -> list[list[int]]:
        decoder = model.find_decoder(AttentionDecoder, user="decode method attention", name=self.decoder_name)
        eos = model.sos_eos
        batch, frames = encoder_out.size(0), encoder_out.size(1)
        beam = self.beam_size
        device = encoder_out.device
        memory_mask = padding_mask(encoder_lens, frames).unsqueeze(1)  # (B, 1, T)
        tokens = torch.full((batch * beam,), eos, dtype=torch.long, device=device)  # <sos> = <eos>
        hyps = tokens.new_zeros(batch * beam, 0)
        scores = torch.full((batch, beam), float("-inf"), device=device)
        scores[:, 0] = 0.0  # only one live beam until the first expansion
        scores = scores.view(-1)  # (B * N,)
        ended = torch.zeros(batch * beam, dtype=torch.bool, device=device)
        base = torch.arange(batch, device=device).unsqueeze(1) * beam  # (B, 1)
        state = None
        for _ in range(max(frames, 1)):
            log_probs, state = decoder.step(encoder_out, memory_mask, tokens, state)  # (B * N, V)
            k = min(beam, log_probs.size(-1))
            top_logp, top_ids = log_probs.topk(k, dim=-1)  # (B * N, k)
            # an ended beam extends only by <eos> at no cost, so it keeps its score and place
            ended_logp = torch.full_like(top_logp, float("-inf"))
            ended_logp[:, 0] = 0.0
            top_logp = torch.where(ended.unsqueeze(1), ended_logp, top_logp)
            top_ids = top_ids.masked_fill(ended.unsqueeze(1), eos)
            candidates = (scores.unsqueeze(1) + top_logp).view(batch, beam * k)
            best_scores, best = candidates.topk(beam, dim=-1)  # (B, N)
            source = (best // k + base).view(-1)  # (B * N,) parent hypothesis
            tokens = top_ids.view(batch, beam * k).gather(1, best).view(-1)
            hyps = torch.cat((hyps.index_select(0, source), tokens.unsqueeze(1)), dim=1)
            state = state.select(source)
            scores = best_scores.view(-1)
            ended = tokens == eos
            if bool(ended.all()):
                break
        lengths = (hyps != eos).sum(dim=1).clamp(min=1).float()
        final = (scores / lengths.pow(self.length_penalty)).view(batch, beam)
        chosen = final.argmax(dim=-1) + base.squeeze(1)  # (B,)
        results = []
        for row in hyps.index_select(0, chosen).tolist():
            results.append(row[: row.index(eos)] if eos in row else row)
        return results
