"""The transducer searches: batched greedy equals a naive per-utterance loop, the modified beam
search with beam 1 is greedy with one symbol per frame, an exhaustive beam search scores each
hypothesis with its exact probability, every streaming search gives chunk by chunk what it
gives on the whole encoder output, options come through decode.options, and attention
rescoring picks the best combined score."""
from __future__ import annotations

import pytest
import torch
from torchaudio.functional import rnnt_loss

from speechforge.builder import build_model
from speechforge.errors import ConfigError
from speechforge.interfaces import StreamingSearch
from speechforge.plugins import default_registry
from speechforge_plugins.u2pp.attention_rescoring import attention_scores

from .transducer_models import PREDICTORS, V, transducer_config, transducer_model

STREAMING = ["transducer_greedy_search", "transducer_beam_search", "transducer_modified_beam_search"]
LENS = torch.tensor([12, 9, 4])


def search(name: str, **options):
    return default_registry().build("search", {"type": name, **options}, "decode")


def encodings(seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(3, 12, 16, generator=generator)


def naive_greedy(model, encoder_out, lens, max_symbols):
    decoder = model.decoder
    results = []
    for i in range(encoder_out.size(0)):
        predicted, state = decoder(torch.zeros(1, 1, dtype=torch.long))
        tokens = []
        for t in range(int(lens[i])):
            frame = decoder.joiner.encoder_proj(encoder_out[i, t])
            for _ in range(max_symbols):
                best = int(decoder.joiner(frame, predicted[0, 0]).argmax())
                if best == 0:
                    break
                tokens.append(best)
                predicted, state = decoder(torch.tensor([[best]]), state)
        results.append(tokens)
    return results


@pytest.mark.parametrize("predictor", ["lstm", "stateless"])
@pytest.mark.parametrize("max_symbols", [1, 3])
def test_greedy_equals_a_naive_loop(predictor, max_symbols):
    model = transducer_model(predictor).eval()
    encoder_out = encodings()
    with torch.no_grad():
        expected = naive_greedy(model, encoder_out, LENS, max_symbols)
    assert search("transducer_greedy_search", max_symbols=max_symbols)(model, encoder_out, LENS) == expected
    assert any(len(tokens) > 1 for tokens in expected)


@pytest.mark.parametrize("predictor", ["lstm", "stateless"])
def test_modified_beam_one_is_greedy_with_one_symbol_per_frame(predictor):
    model = transducer_model(predictor).eval()
    encoder_out = encodings(1)
    greedy = search("transducer_greedy_search", max_symbols=1)(model, encoder_out, LENS)
    assert search("transducer_modified_beam_search", beam_size=1)(model, encoder_out, LENS) == greedy


def test_exhaustive_beam_search_scores_are_exact_probabilities():
    """With a beam wider than every hypothesis there is (two frames, two tokens, at most two per
    frame), nothing is pruned: each hypothesis of at most two tokens is scored with log P(y | x)
    over all its alignments, the full loss's value."""
    config = transducer_config(PREDICTORS["lstm"])
    config["vocab_size"] = 3
    model = build_model(config).eval()
    encoder_out = torch.randn(1, 2, 16)
    method = search("transducer_beam_search", beam_size=64, max_symbols=2)
    state = method.step(model, method.init(model, 1), encoder_out, torch.tensor([2]))
    nbest = state.beams[0].nbest()
    assert len(nbest) == 31  # every sequence of at most 4 tokens over {1, 2}
    decoder = model.decoder
    checked = 0
    for tokens, score in nbest:
        if len(tokens) > 2:
            continue
        with torch.no_grad():
            pred = decoder(torch.tensor([[0, *tokens]]))[0]
            logits = decoder.joiner(decoder.joiner.encoder_proj(encoder_out).unsqueeze(2), pred.unsqueeze(1))
            exact = -rnnt_loss(logits, torch.tensor([tokens], dtype=torch.int32), torch.tensor([2], dtype=torch.int32),
                               torch.tensor([len(tokens)], dtype=torch.int32), blank=0, reduction="sum")  # fmt: skip
        assert score == pytest.approx(float(exact), abs=1e-4), tokens
        checked += 1
    assert checked == 7


@pytest.mark.parametrize("name", STREAMING)
@pytest.mark.parametrize("predictor", ["lstm", "stateless"])
def test_streaming_equals_offline(name, predictor):
    model = transducer_model(predictor).eval()
    method = search(name, beam_size=3) if name != "transducer_greedy_search" else search(name)
    assert isinstance(method, StreamingSearch)
    encoder_out = encodings(2)
    offline = method(model, encoder_out, LENS)
    state = method.init(model, 3)
    for start in range(0, 12, 5):
        chunk_lens = (LENS - start).clamp(min=0, max=5)
        state = method.step(model, state, encoder_out[:, start : start + 5], chunk_lens)
        assert len(method.partial(state)) == 3
    assert method.finalize(model, state) == offline
    assert any(offline)


def test_options_come_through_decode_options():
    from speechforge.decode.search_options import search_options
    from speechforge.train.options import DecodeOptions

    registry = default_registry()
    decode = DecodeOptions(beam_size=7, options={"transducer_greedy_search": {"max_symbols": 2}})
    assert search_options(registry, decode, "transducer_greedy_search") == {"max_symbols": 2}
    assert search_options(registry, decode, "transducer_modified_beam_search") == {"beam_size": 7}
    with pytest.raises(ConfigError, match=r"decode\.options\.transducer_beam_search\.max_symbol: unknown key"):
        registry.build("search", {"type": "transducer_beam_search", "max_symbol": 2}, "decode.options.transducer_beam_search")


def test_attention_rescoring_picks_the_best_combined_score():
    config = transducer_config(PREDICTORS["stateless"])
    transducer = config.pop("decoder")
    config["decoders"] = {
        "transducer": transducer,
        "attention": {"type": "transformer", "heads": 2, "num_blocks": 1, "ffn": {"type": "dense", "hidden": 24}, "dropout": 0.0},
    }
    model = build_model(config).eval()
    encoder_out = encodings(3)
    first = search("transducer_modified_beam_search", beam_size=4)
    state = first.step(model, first.init(model, 3), encoder_out, LENS)
    chosen = search("transducer_attention_rescoring", beam_size=4, transducer_weight=0.3)(model, encoder_out, LENS)
    for i, beam in enumerate(state.beams):
        nbest = beam.nbest()
        hyps = [tokens for tokens, _ in nbest]
        with torch.no_grad():
            att = attention_scores(model.decoders["attention"], encoder_out[i : i + 1, : int(LENS[i])], hyps, V - 1, 0.0)
        totals = [0.3 * score + float(a) for (_, score), a in zip(nbest, att)]
        assert chosen[i] == hyps[max(range(len(hyps)), key=totals.__getitem__)]
    with pytest.raises(ConfigError, match="reverse_weight: 0.5 needs a right-to-left decoder"):
        search("transducer_attention_rescoring", reverse_weight=0.5)(model, encoder_out, LENS)
    only_transducer = transducer_model("lstm").eval()
    with pytest.raises(ConfigError, match="transducer_attention_rescoring needs a decoder of kind AttentionDecoder"):
        search("transducer_attention_rescoring")(only_transducer, encoder_out, LENS)
