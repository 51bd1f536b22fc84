"""Streaming searches: ``init``/``step``/``finalize`` over chunks of an encoder output equal
the offline search on all of it, whatever the chunking and batch padding; which registered
searches stream is told without building them, and a method that cannot is refused by name."""
from __future__ import annotations

import pytest
import torch

from speechforge.decode.ctc_greedy_search import CTCGreedySearch
from speechforge.decode.ctc_prefix_beam_search import CTCPrefixBeamSearch, ctc_prefix_beam_search_lm
from speechforge.decode.streaming_decoder import check_streaming_method, streaming_methods
from speechforge.errors import ConfigError
from speechforge.lm.ngram_lm import NgramLM
from speechforge.modules.ctc_head import CTCHead
from speechforge.plugins import default_registry

V, D = 6, 8


class CTCOnly(torch.nn.Module):
    """What the CTC searches read of a model: its ``ctc`` head."""

    def __init__(self) -> None:
        super().__init__()
        self.ctc = CTCHead(D, V)

    def find_ctc_head(self, user: str) -> CTCHead:
        return self.ctc


def encodings(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Peaky random encodings (B, T, D), so that tokens, repeats and blanks all occur."""
    return 4.0 * torch.randn(len(lengths), max(lengths), D), torch.tensor(lengths)


def stepped(search, model, out: torch.Tensor, lens: torch.Tensor, chunk: int) -> tuple[list, list[list[int]]]:
    """Step the search over ``chunk``-frame pieces; returns the partials after each and the final."""
    state, partials = search.init(model, out.size(0)), []
    for start in range(0, out.size(1), chunk):
        chunk_lens = (lens - start).clamp(0, chunk)
        state = search.step(model, state, out[:, start : start + chunk], chunk_lens)
        partials.append(search.partial(state))
    return partials, search.finalize(model, state)


def lm() -> NgramLM:
    pieces = ["<blank>", "<unk>", "a", "b", "c", "<sos/eos>"]
    return NgramLM.train([[2, 3, 4], [3, 3], [4, 2], [2, 2, 3]], 3, pieces, skip_ids=(0, 1, 5))


SEARCHES = {
    "greedy": lambda: CTCGreedySearch(),
    "prefix_beam": lambda: CTCPrefixBeamSearch(beam_size=3),
    "prefix_beam_lm": lambda: ctc_prefix_beam_search_lm(lm=lm(), beam_size=3, lm_weight=0.8, lm_bonus=0.5),
}


@pytest.mark.parametrize("name", SEARCHES)
@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_stepping_chunk_by_chunk_equals_the_offline_search(name, chunk):
    model = CTCOnly().eval()
    out, lens = encodings([23, 17, 5, 1])
    with torch.no_grad():
        offline = SEARCHES[name]()(model, out, lens)
        partials, final = stepped(SEARCHES[name](), model, out, lens, chunk)
        alone = [SEARCHES[name]()(model, out[i : i + 1, :n], lens[i : i + 1])[0] for i, n in enumerate(lens.tolist())]
    assert final == offline == alone
    assert any(final) and len(partials) == -(-out.size(1) // chunk)
    if name == "greedy":  # its partial is its result so far; a beam's last partial may differ (LM end)
        assert partials[-1] == final


def test_greedy_partials_grow_and_repeats_merge_across_chunks():
    model = CTCOnly().eval()
    out, lens = encodings([30])
    with torch.no_grad():
        labels = model.ctc(out).argmax(-1)[0]
        partials, final = stepped(CTCGreedySearch(), model, out, lens, 1)
    assert bool((labels[1:] == labels[:-1])[labels[1:] != 0].any())  # a repeat to merge exists
    for before, after in zip(partials, partials[1:]):
        assert after[0][: len(before[0])] == before[0]
    assert final == CTCGreedySearch()(model, out, lens)


def test_registered_searches_say_whether_they_stream():
    registry = default_registry()
    streaming = ["ctc_greedy_search", "ctc_prefix_beam_search", "ctc_prefix_beam_search_lm",
                 "transducer_beam_search", "transducer_greedy_search", "transducer_modified_beam_search"]  # fmt: skip
    assert streaming_methods(registry) == streaming
    assert check_streaming_method(registry, "ctc_greedy_search") == "ctc_greedy_search"
    with pytest.raises(ConfigError) as error:
        check_streaming_method(registry, "attention_rescoring")
    assert str(error.value) == f"--method: attention_rescoring cannot stream; streaming methods: {', '.join(streaming)}"
