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
