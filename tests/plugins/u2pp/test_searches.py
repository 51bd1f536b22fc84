"""The ``attention`` beam search and ``attention_rescoring``: beam 1 equals greedy
autoregressive decoding recomputed from scratch, batching never changes a result, rescoring
picks the hypothesis with the best combined score recomputed naively, weights are checked."""
from __future__ import annotations

import pytest
import torch

from speechforge.builder import build_model
from speechforge.decode.ctc_prefix_beam_search import prefix_beam_search
from speechforge.errors import ConfigError
from speechforge.modules.mask import padding_mask
from speechforge.plugins import default_registry

V = 12
EOS = V - 1


def model_with(decoder_type: str = "bitransformer"):
    decoder = {"type": decoder_type, "heads": 2, "num_blocks": 2, "ffn": {"type": "dense", "hidden": 24}, "dropout": 0.0}
    if decoder_type == "bitransformer":
        decoder["r_num_blocks"] = 1
    config = {
        "vocab_size": V,
        "frontend": {"type": "fbank", "num_mel_bins": 20},
        "encoder": {"type": "conformer", "d_model": 16, "heads": 2, "num_blocks": 1, "ffn": {"type": "dense", "hidden": 24}},
        "decoder": decoder,
        "losses": [{"type": "ctc", "weight": 1.0}],
    }
    model = build_model(config).eval()
    left = model.decoder if decoder_type == "transformer" else model.decoder.left_decoder
    with torch.no_grad():  # make <eos> likely enough that hypotheses end at different steps
        left.output_layer.bias[EOS] += 0.9
    return model


def search(name: str, **options):
    return default_registry().build("search", {"type": name, **options}, "decode")


def encodings(batch: int = 3, frames: int = 12):
    lens = torch.tensor([frames, frames - 4, 5][:batch])
    return torch.randn(batch, frames, 16), lens


def naive_greedy(decoder, memory, length):
    """Argmax token by token, re-running the whole decoder on the prefix each time."""
    mask = padding_mask(torch.tensor([length]), memory.size(1)).unsqueeze(1)
    tokens = [EOS]
    for _ in range(memory.size(1)):
        logits, _ = decoder(memory, mask, torch.tensor([tokens]), torch.tensor([len(tokens)]))
        best = int(logits[0, -1].argmax())
        if best == EOS:
            break
        tokens.append(best)
    return tokens[1:]


@pytest.mark.parametrize("decoder_type", ["transformer", "bitransformer"])
def test_beam_one_equals_greedy_autoregressive_decoding(decoder_type):
    model = model_with(decoder_type)
    memory, lens = encodings()
    result = search("attention", beam_size=1)(model, memory, lens)
    assert len({len(r) for r in result}) > 1  # some end early, some run to the step limit
    left = model.decoder if decoder_type == "transformer" else model.decoder.left_decoder
    # the search runs every utterance for as many steps as the longest one
    with torch.no_grad():
        expected = [naive_greedy(left, memory[i : i + 1], int(lens[i])) for i in range(3)]
    assert result == expected


def test_beam_search_is_the_same_alone_or_in_a_batch():
    model = model_with()
    memory, lens = encodings()
    together = search("attention", beam_size=4)(model, memory, lens)
    alone = [search("attention", beam_size=4)(model, memory[i : i + 1], lens[i : i + 1])[0] for i in range(3)]
    assert together == alone


def naive_combined_score(model, memory, hyp, ctc_score, ctc_weight, reverse_weight):
    """WeNet's loop: sum the decoders' log-probs token by token, <eos> included."""
    mask = torch.ones(1, 1, memory.size(1), dtype=torch.bool)
    ys_in = torch.tensor([[EOS] + hyp])
    r_ys_in = torch.tensor([[EOS] + hyp[::-1]])
    l2r, r2l = model.decoder(memory, mask, ys_in, torch.tensor([len(hyp) + 1]), r_ys_in)
    l2r, r2l = torch.log_softmax(l2r[0], -1), torch.log_softmax(r2l[0], -1)
    left = sum(float(l2r[j, w]) for j, w in enumerate(hyp)) + float(l2r[len(hyp), EOS])
    right = sum(float(r2l[len(hyp) - j - 1, w]) for j, w in enumerate(hyp)) + float(r2l[len(hyp), EOS])
    return ctc_weight * ctc_score + (1 - reverse_weight) * left + reverse_weight * right


@pytest.mark.parametrize("ctc_weight,reverse_weight", [(0.3, 0.5), (0.0, 0.0), (1.0, 1.0), (0.5, 0.3)])
def test_rescoring_picks_the_best_combined_score(ctc_weight, reverse_weight):
    model = model_with()
    memory, lens = encodings()
    result = search("attention_rescoring", beam_size=5, ctc_weight=ctc_weight, reverse_weight=reverse_weight)(model, memory, lens)
    log_probs = model.ctc(memory)
    with torch.no_grad():
        for i in range(3):
            length = int(lens[i])
            nbest = prefix_beam_search(log_probs[i, :length], 5)
            scores = [
                naive_combined_score(model, memory[i : i + 1, :length], list(h), s, ctc_weight, reverse_weight) for h, s in nbest
            ]
            assert len(nbest) > 1
            best = max(range(len(nbest)), key=scores.__getitem__)
            assert result[i] == list(nbest[best][0])
    if ctc_weight == 0.0:  # the decoders alone disagree with the CTC ranking somewhere
        assert result != search("ctc_prefix_beam_search", beam_size=5)(model, memory, lens)


def test_rescoring_with_ctc_weight_only_follows_the_prefix_beam_search():
    model = model_with()
    memory, lens = encodings()
    rescored = search("attention_rescoring", beam_size=5, ctc_weight=1e6)(model, memory, lens)
    assert rescored == search("ctc_prefix_beam_search", beam_size=5)(model, memory, lens)


def test_reverse_weight_default_follows_the_decoder():
    from speechforge_plugins.u2pp.attention_rescoring import DEFAULT_REVERSE_WEIGHT

    rescoring = search("attention_rescoring")
    assert rescoring.resolved_reverse_weight(model_with("bitransformer").decoder) == DEFAULT_REVERSE_WEIGHT
    assert rescoring.resolved_reverse_weight(model_with("transformer").decoder) == 0.0
    with pytest.raises(ConfigError, match="decode.options.attention_rescoring.reverse_weight: 0.3 needs a right-to-left decoder"):
        search("attention_rescoring", reverse_weight=0.3).resolved_reverse_weight(model_with("transformer").decoder)


def test_searches_need_an_attention_decoder():
    config = {
        "vocab_size": V,
        "frontend": {"type": "fbank", "num_mel_bins": 20},
        "encoder": {"type": "conformer", "d_model": 16, "heads": 2, "num_blocks": 1},
        "losses": [{"type": "ctc"}],
    }
    model = build_model(config).eval()
    memory, lens = encodings()
    for name in ("attention", "attention_rescoring"):
        with pytest.raises(ConfigError, match="needs a decoder of kind AttentionDecoder; the model has none"):
            search(name)(model, memory, lens)


def tiny_lm(order: int = 2):
    """A bigram LM over the test vocabulary that strongly prefers a few token pairs."""
    from speechforge.lm.ngram_lm import NgramLM

    sentences = [[2, 3, 4], [2, 3, 5, 6], [7, 8], [3, 4, 9, 10]] * 3 + [[5, 2]]
    return NgramLM.train(sentences, order, [f"t{i}" for i in range(V)], skip_ids=(0, 1, EOS))


def naive_lm_score(lm, hyp, weight, bonus):
    """``weight * log p_LM(hyp </s>) + bonus * len(hyp)``, each token given its whole history cut
    to the LM's order."""
    history, total = [lm.bos], 0.0
    for token in [*hyp, lm.eos]:
        total += lm.log_prob(tuple(history[-(lm.order - 1) :]), token)
        history.append(token)
    return weight * total + bonus * len(hyp)


@pytest.mark.parametrize(
    "ctc_weight,reverse_weight,lm_weight,lm_bonus", [(0.3, 0.5, 0.5, 1.0), (1.0, 0.3, 2.0, 0.5), (0.5, 0.0, 0.8, 0.0)]
)
def test_lm_rescoring_picks_the_best_combined_score_of_the_lm_fused_nbest(ctc_weight, reverse_weight, lm_weight, lm_bonus):
    from speechforge.lm.shallow_fusion import LMPrefixScore

    model, lm = model_with(), tiny_lm()
    memory, lens = encodings()
    options = {"beam_size": 5, "ctc_weight": ctc_weight, "reverse_weight": reverse_weight}
    lm_options = {"lm_weight": lm_weight, "lm_bonus": lm_bonus}
    rescoring = default_registry().build("search", {"type": "attention_rescoring_lm", **options, **lm_options}, "decode", lm=lm)
    result = rescoring(model, memory, lens)
    log_probs = model.ctc(memory)
    with torch.no_grad():
        for i in range(3):
            length = int(lens[i])
            nbest = prefix_beam_search(log_probs[i, :length], 5, prefix_score=LMPrefixScore(lm, lm_weight, lm_bonus))
            assert nbest != prefix_beam_search(log_probs[i, :length], 5)  # the LM changed the first pass
            scores = [
                naive_combined_score(model, memory[i : i + 1, :length], list(h), s + naive_lm_score(lm, h, lm_weight, lm_bonus), ctc_weight, reverse_weight)
                for h, s in nbest
            ]
            best = max(range(len(nbest)), key=scores.__getitem__)
            assert result[i] == list(nbest[best][0])


def test_lm_rescoring_with_ctc_weight_only_follows_the_lm_fused_prefix_beam_search():
    model, lm = model_with(), tiny_lm()
    memory, lens = encodings()
    build = default_registry().build
    rescored = build("search", {"type": "attention_rescoring_lm", "beam_size": 5, "ctc_weight": 1e6}, "decode", lm=lm)
    first_pass = build("search", {"type": "ctc_prefix_beam_search_lm", "beam_size": 5}, "decode", lm=lm)
    assert rescored(model, memory, lens) == first_pass(model, memory, lens)
    without_lm = build("search", {"type": "attention_rescoring_lm", "beam_size": 5, "lm_weight": 0.0, "lm_bonus": 0.0}, "decode", lm=lm)
    assert without_lm(model, memory, lens) == search("attention_rescoring", beam_size=5)(model, memory, lens)


def test_lm_rescoring_needs_the_language_model_and_names_its_keys():
    with pytest.raises(ConfigError, match="attention_rescoring_lm needs the experiment's language model EXP/lm/lm.arpa"):
        search("attention_rescoring_lm")
    with pytest.raises(ConfigError, match="decode.options.attention_rescoring_lm.reverse_weight: must be in"):
        default_registry().build("search", {"type": "attention_rescoring_lm", "reverse_weight": 2.0}, "decode", lm=tiny_lm())
