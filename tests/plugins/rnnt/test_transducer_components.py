"""The transducer decoder's parts: registered kinds with checked keys, predictors that carry
their state (token by token equals the whole sequence), icefall's stateless context, the
joiner's two projections."""
from __future__ import annotations

import pytest
import torch

from speechforge.builder import build_model
from speechforge.errors import ConfigError
from speechforge.plugins import create_host
from speechforge_plugins.rnnt.predictor import cat_states, select_state
from speechforge_plugins.rnnt.transducer_decoder import TransducerDecoder

from .transducer_models import PREDICTORS, V, transducer_config, transducer_model


def test_components_are_registered_by_the_plugin():
    host = create_host()
    owners = {(c.kind, c.name): c.owner for c in host.registry.components()}
    expected = [("predictor", "lstm"), ("predictor", "stateless"), ("joiner", "linear"), ("decoder", "transducer"),
                ("loss", "rnnt"), ("loss", "pruned_rnnt"), ("search", "transducer_greedy_search"),
                ("search", "transducer_beam_search"), ("search", "transducer_modified_beam_search"),
                ("search", "transducer_attention_rescoring")]  # fmt: skip
    for key in expected:
        assert owners[key] == "rnnt", key


def test_predictor_and_joiner_keys_are_checked_with_dotted_paths():
    with pytest.raises(ConfigError, match=r"decoder\.predictor\.hiden: unknown key .*did you mean hidden"):
        build_model(transducer_config({"type": "lstm", "hiden": 8}))
    config = transducer_config(PREDICTORS["lstm"])
    config["decoder"]["joiner"] = {"type": "linear", "activation": "gelu"}
    with pytest.raises(ConfigError, match=r"decoder\.joiner\.activation: must be one of tanh, relu, got 'gelu'"):
        build_model(config)


@pytest.mark.parametrize("predictor", ["lstm", "stateless"])
def test_predictor_token_by_token_equals_the_whole_sequence(predictor):
    decoder = transducer_model(predictor).decoder.eval()
    tokens = torch.randint(0, V, (3, 5))
    whole, whole_state = decoder(tokens)
    state, steps = None, []
    for u in range(tokens.size(1)):
        out, state = decoder(tokens[:, u : u + 1], state)
        steps.append(out)
    torch.testing.assert_close(torch.cat(steps, dim=1), whole)
    for part, whole_part in zip(state, whole_state):
        torch.testing.assert_close(part, whole_part)
    # states are per hypothesis along dim 0: picking and joining rows commutes with the predictor
    picked = cat_states([select_state(whole_state, torch.tensor([2])), select_state(whole_state, torch.tensor([0]))])
    next_out, _ = decoder(tokens[[2, 0], :1], picked)
    torch.testing.assert_close(next_out, decoder(tokens[[2, 0], :1], select_state(whole_state, torch.tensor([2, 0])))[0])


def test_stateless_predictor_sees_exactly_two_tokens():
    decoder = transducer_model("stateless").decoder.eval()
    a = torch.tensor([[3, 1, 4, 1, 5]])
    b = torch.tensor([[7, 2, 4, 1, 5]])  # differs only three or more positions before the end
    out_a, state_a = decoder(a)
    out_b, _ = decoder(b)
    torch.testing.assert_close(out_a[:, -1], out_b[:, -1])
    assert not torch.allclose(out_a[:, 1], out_b[:, 1])
    assert state_a[0].tolist() == [[5]]
    # the first token's context is a zero embedding (icefall's left padding), not the blank's
    predictor = decoder.predictor
    first, _ = predictor(a[:, :1])
    x = predictor.embedding(a[:, :1]).transpose(1, 2)
    expected = torch.relu(torch.nn.functional.conv1d(torch.nn.functional.pad(x, (1, 0)), predictor.conv.weight, groups=predictor.conv.groups))
    torch.testing.assert_close(first, expected.transpose(1, 2))


def test_joiner_combines_projections():
    decoder: TransducerDecoder = transducer_model("lstm").decoder
    joiner = decoder.joiner
    enc, pred = torch.randn(2, 4, 16), torch.randn(2, 3, 8)
    logits = joiner(joiner.encoder_proj(enc).unsqueeze(2), joiner.predictor_proj(pred).unsqueeze(1))
    assert logits.shape == (2, 4, 3, V)
    expected = joiner.output(torch.tanh(joiner.encoder_proj(enc[1, 2]) + joiner.predictor_proj(pred[1, 0])))
    torch.testing.assert_close(logits[1, 2, 0], expected)
    assert decoder.simple_am_proj is None  # only when asked: every parameter of a model trains
    assert transducer_model("lstm", simple_projections=True).decoder.simple_lm_proj.in_features == 8
