"""The Recognizer's method defaults and search options: an unnamed method is the config's first
``decode.methods`` entry, and ``decode.options`` reach the search factory, checked like any
component key."""
from __future__ import annotations

import pytest
import torch

from speechforge.data.audio import load_audio
from speechforge.data.data_dir import read_data_dir
from speechforge.decode.recognizer import Recognizer
from speechforge.decode.search_options import parse_option_overrides, search_options
from speechforge.errors import ConfigError
from speechforge.plugins import default_registry
from speechforge.train.options import DecodeOptions

#: An attention-only U2++ model: no ctc loss, so nothing should need a CTC head to decode it.
ATTENTION_ONLY = {
    "frontend": {"type": "fbank", "num_mel_bins": 40},
    "encoder": {
        "type": "conformer", "d_model": 32, "heads": 4, "num_blocks": 1,
        "ffn": {"type": "dense", "hidden": 64}, "encoder_block": {"type": "conformer", "conv_kernel": 5},
    },
    "decoder": {"type": "transformer", "heads": 4, "num_blocks": 1, "ffn": {"type": "dense", "hidden": 64}},
    "losses": [{"type": "attention"}],
}  # fmt: skip


def fail_if_called(module: torch.nn.Module, args: object) -> None:
    raise AssertionError("the CTC head ran, but the default method is attention")


def test_unnamed_method_is_the_first_configured_one(untrained_experiment, tiny_data_dir):
    exp = untrained_experiment(ATTENTION_ONLY, {"methods": ["attention"], "options": {"attention": {"beam_size": 2}}})
    recognizer = Recognizer(exp)
    if getattr(recognizer.model, "ctc", None) is not None:
        recognizer.model.ctc.register_forward_pre_hook(fail_if_called)
    audio = read_data_dir(tiny_data_dir)[0].audio
    wave = load_audio(audio, recognizer.sample_rate)
    expected = recognizer.decode_batch(wave.unsqueeze(0), torch.tensor([wave.numel()]), "attention", beam_size=2)
    assert recognizer.default_method == "attention"
    assert recognizer.transcribe(audio) == expected[0]
    assert recognizer.decode_batch(wave.unsqueeze(0), torch.tensor([wave.numel()])) == expected


def test_empty_methods_is_an_error_naming_the_config(untrained_experiment, tiny_data_dir, tiny_config):
    exp = untrained_experiment(tiny_config, {"methods": []})
    with pytest.raises(ConfigError, match=r"exp/config.yaml: decode.methods is empty; name the searches to run \(registered: .*ctc_greedy_search"):
        Recognizer(exp).transcribe(read_data_dir(tiny_data_dir)[0].audio)


def test_options_precedence_beam_size_then_method_options_then_overrides():
    registry = default_registry()
    decode = DecodeOptions(beam_size=7, options={"ctc_prefix_beam_search": {"beam_size": 5, "blank_id": 1}})
    assert search_options(registry, decode, "ctc_greedy_search") == {}
    assert search_options(registry, decode, "ctc_prefix_beam_search_lm") == {"beam_size": 7}
    assert search_options(registry, decode, "ctc_prefix_beam_search") == {"beam_size": 5, "blank_id": 1}
    assert search_options(registry, decode, "ctc_prefix_beam_search", {"beam_size": 3}) == {"beam_size": 3, "blank_id": 1}


def test_configured_options_reach_the_factory(untrained_experiment, tiny_config):
    decode = {"beam_size": 6, "options": {"ctc_prefix_beam_search": {"beam_size": 4}, "ctc_greedy_search": {"blank_id": 2}}}
    recognizer = Recognizer(untrained_experiment(tiny_config, decode))
    assert recognizer.search("ctc_prefix_beam_search", **recognizer.search_options("ctc_prefix_beam_search")).beam_size == 4
    assert recognizer.search("ctc_greedy_search", **recognizer.search_options("ctc_greedy_search")).blank_id == 2


def test_misspelt_option_names_the_closest_key(untrained_experiment, tiny_config):
    decode = {"options": {"ctc_prefix_beam_search": {"beam_sise": 4}}}
    recognizer = Recognizer(untrained_experiment(tiny_config, decode))
    wave = torch.randn(1, 8000)
    with pytest.raises(ConfigError) as error:
        recognizer.decode_batch(wave, torch.tensor([8000]), "ctc_prefix_beam_search")
    assert str(error.value).startswith(
        "decode.options.ctc_prefix_beam_search.beam_sise: unknown key for search 'ctc_prefix_beam_search'; did you mean beam_size?"
    )


def test_options_for_an_unknown_method_fail_at_load(untrained_experiment, tiny_config):
    exp = untrained_experiment(tiny_config, {"options": {"ctc_prefix_beam_serch": {"beam_size": 4}}})
    with pytest.raises(ConfigError, match=r"decode.options.ctc_prefix_beam_serch: unknown search .*did you mean ctc_prefix_beam_search\?"):
        Recognizer(exp)


def test_a_key_moved_into_options_says_where_it_went(untrained_experiment, tiny_config):
    exp = untrained_experiment(tiny_config, {"lm_weight": 0.5})
    with pytest.raises(ConfigError, match=r"^decode.lm_weight: now a key of each search that takes it, e.g. decode.options.ctc_prefix_beam_search_lm.lm_weight$"):
        Recognizer(exp)


def test_option_arguments_are_read_as_yaml_values():
    parsed = parse_option_overrides(["attention.beam_size=4", "attention.length_penalty=0.5", "attention_rescoring.reverse_weight=null"])
    assert parsed == {"attention": {"beam_size": 4, "length_penalty": 0.5}, "attention_rescoring": {"reverse_weight": None}}
    for bad in ("beam_size=4", "attention.beam_size", ".beam_size=4"):
        with pytest.raises(ConfigError, match=rf"--option '{bad}': expected METHOD.key=value"):
            parse_option_overrides([bad])
