"""WER and CER with jiwer, plus a per-utterance alignment file in the spirit of sclite."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import jiwer


@dataclass(frozen=True)
class ErrorRates:
    wer: float  # percent
    cer: float  # percent
    num_utts: int
    substitutions: int
    deletions: int
    insertions: int
    ref_words: int


def error_rates(refs: Mapping[str, str], hyps: Mapping[str, str]) -> ErrorRates:
    """Corpus-level WER/CER over the utterances of ``refs``; a missing hypothesis counts as empty."""
    ids = sorted(refs)
    ref_list = [refs[i] for i in ids]
    hyp_list = [hyps.get(i, "") for i in ids]
    words = jiwer.process_words(ref_list, hyp_list)
    chars = jiwer.process_characters(ref_list, hyp_list)
    return ErrorRates(
        wer=100.0 * words.wer,
        cer=100.0 * chars.cer,
        num_utts=len(ids),
        substitutions=words.substitutions,
        deletions=words.deletions,
        insertions=words.insertions,
        ref_words=sum(len(r.split()) for r in ref_list),
    )


def alignment_report(refs: Mapping[str, str], hyps: Mapping[str, str]) -> str:
    """Per utterance: id, error counts, and REF/HYP lines aligned word by word, errors in
    upper case marks (S, D, I) on an EVAL line, like sclite's ``pralign`` output."""
    blocks = []
    for utt_id in sorted(refs):
        ref, hyp = refs[utt_id], hyps.get(utt_id, "")
        out = jiwer.process_words(ref, hyp)
        ref_words, hyp_words = ref.split(), hyp.split()
        r_line, h_line, e_line = [], [], []
        for chunk in out.alignments[0]:
            for k in range(max(chunk.ref_end_idx - chunk.ref_start_idx, chunk.hyp_end_idx - chunk.hyp_start_idx)):
                r = ref_words[chunk.ref_start_idx + k] if chunk.type != "insert" else "*" * 3
                h = hyp_words[chunk.hyp_start_idx + k] if chunk.type != "delete" else "*" * 3
                mark = {"equal": "", "substitute": "S", "delete": "D", "insert": "I"}[chunk.type]
                width = max(len(r), len(h), 1)
                r_line.append(r.ljust(width))
                h_line.append(h.ljust(width))
                e_line.append(mark.ljust(width))
        errors = out.substitutions + out.deletions + out.insertions
        blocks.append(
            f"id: {utt_id}\n"
            f"Scores: (#C #S #D #I) {out.hits} {out.substitutions} {out.deletions} {out.insertions}  errors {errors}\n"
            f"REF:  {' '.join(r_line)}\nHYP:  {' '.join(h_line)}\nEval: {' '.join(e_line).rstrip()}\n"
        )
    return "\n".join(blocks)
