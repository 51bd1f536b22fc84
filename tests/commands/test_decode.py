"""``speechforge decode`` and ``curve``: every method reads one encoding per batch and chunk
setting, ``--option`` reaches the search factories, and an unnamed method is the config's first
``decode.methods`` entry."""
from __future__ import annotations

import json

import pytest
import torch

from speechforge.cli import main
from speechforge.commands import decode as decode_command
from speechforge.commands.decode import decode_utterances
from speechforge.data.data_dir import read_data_dir, write_data_dir
from speechforge.data.duration_batch_sampler import DurationBatchSampler
from speechforge.decode.recognizer import Recognizer
from speechforge.metrics.wer import error_rates

U2PP = {
    "frontend": {"type": "fbank", "num_mel_bins": 40},
    "encoder": {
        "type": "conformer", "d_model": 32, "heads": 4, "num_blocks": 1, "causal": True, "use_dynamic_chunk": True,
        "ffn": {"type": "dense", "hidden": 64}, "encoder_block": {"type": "conformer", "conv_kernel": 5},
    },
    "decoder": {"type": "transformer", "heads": 4, "num_blocks": 1, "ffn": {"type": "dense", "hidden": 64}},
    "losses": [{"type": "ctc", "weight": 0.3}, {"type": "attention", "weight": 0.7}],
}  # fmt: skip
METHODS = ["ctc_greedy_search", "ctc_prefix_beam_search", "attention_rescoring"]
MAX_SECONDS = 3.0  # several batches of the data dirs below


@pytest.fixture
def small_data_dir(tmp_path, tiny_data_dir):
    """The first 4 utterances of ``tiny_data_dir`` (random-weight searches are slow)."""
    write_data_dir(tmp_path / "small", read_data_dir(tiny_data_dir)[:4])
    return tmp_path / "small"


def count_encoder_calls(recognizer: Recognizer) -> list[int]:
    calls = [0]
    recognizer.model.encoder.register_forward_pre_hook(lambda module, args: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_every_method_reads_one_encoding_and_gives_what_it_gives_alone(untrained_experiment, small_data_dir):
    recognizer = Recognizer(untrained_experiment(U2PP, {"methods": METHODS, "beam_size": 2}))
    utterances = read_data_dir(small_data_dir)
    batches = len(list(DurationBatchSampler([u.duration for u in utterances], MAX_SECONDS, shuffle=False)))
    assert batches > 1
    searches = {m: recognizer.search(m, **recognizer.search_options(m)) for m in METHODS}
    calls = count_encoder_calls(recognizer)
    together = decode_utterances(recognizer, utterances, searches, chunk_size=4, max_seconds=MAX_SECONDS)
    assert calls[0] == batches
    for method, search in searches.items():
        alone = decode_utterances(recognizer, utterances, {method: search}, chunk_size=4, max_seconds=MAX_SECONDS)
        assert together[method].hyps == alone[method].hyps, method
        assert len(together[method].hyps) == len(utterances)


def test_decode_command_encodes_once_per_batch_and_chunk_setting(untrained_experiment, small_data_dir, monkeypatch):
    exp = untrained_experiment(U2PP, {"methods": METHODS, "chunk_sizes": [-1, 4], "beam_size": 2})
    counted: list[list[int]] = []

    class CountingRecognizer(Recognizer):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            counted.append(count_encoder_calls(self))

    monkeypatch.setattr(decode_command, "Recognizer", CountingRecognizer)
    argv = ["decode", "--exp-dir", str(exp), "--data", str(small_data_dir), "--max-seconds", str(MAX_SECONDS)]
    assert main([*argv, "--option", "attention_rescoring.beam_size=1", "--option", "attention_rescoring.ctc_weight=0.5"]) == 0
    durations = [u.duration for u in read_data_dir(small_data_dir)]
    assert counted[0][0] == 2 * len(list(DurationBatchSampler(durations, MAX_SECONDS, shuffle=False)))
    out = exp / "decode" / small_data_dir.name
    assert sorted(p.name for p in out.iterdir()) == sorted(METHODS + [f"{m}@chunk4" for m in METHODS])
    options = {p.name: json.loads((p / "decode.json").read_text())["options"] for p in out.iterdir()}
    assert options["attention_rescoring@chunk4"] == {"beam_size": 1, "ctc_weight": 0.5}
    assert options["ctc_prefix_beam_search"] == {"beam_size": 2}
    assert options["ctc_greedy_search"] == {}


@pytest.mark.parametrize(
    "option,message",
    [
        ("ctc_prefix_beam_search.beam_sise=2",
         "decode.options.ctc_prefix_beam_search.beam_sise: unknown key for search 'ctc_prefix_beam_search'; did you mean beam_size?"),
        ("attention.beam_size=2", "--option attention.beam_size: attention is not decoded here (methods: ctc_prefix_beam_search)"),
    ],
)  # fmt: skip
def test_decode_command_rejects_a_bad_option(untrained_experiment, small_data_dir, capsys, option, message):
    exp = untrained_experiment(U2PP, {})
    argv = ["decode", "--exp-dir", str(exp), "--data", str(small_data_dir), "--method", "ctc_prefix_beam_search"]
    assert main([*argv, "--option", option]) == 2
    assert message in capsys.readouterr().err


def test_curve_scores_the_first_configured_method(untrained_experiment, small_data_dir, monkeypatch):
    exp = untrained_experiment(U2PP, {"methods": ["attention", "ctc_greedy_search"], "options": {"attention": {"beam_size": 1}}})
    (exp / "checkpoints").mkdir()
    (exp / "model_avg.pt").rename(exp / "checkpoints" / "epoch_1.pt")
    recognizer = Recognizer(exp, exp / "checkpoints" / "epoch_1.pt")
    utterances = read_data_dir(small_data_dir)[:2]
    write_data_dir(small_data_dir.parent / "two", utterances)
    hyps = decode_utterances(recognizer, utterances, {"attention": recognizer.search("attention", beam_size=1)})["attention"].hyps
    monkeypatch.setattr(type(recognizer.model.ctc), "forward", lambda *args: pytest.fail("curve ran a CTC search"))
    assert main(["curve", "--exp-dir", str(exp), "--data", str(small_data_dir.parent / "two")]) == 0
    (point,) = json.loads((exp / "wer_curve.json").read_text())
    assert point["cer"] == pytest.approx(error_rates({u.utt_id: u.text for u in utterances}, hyps).cer)
    assert torch.isfinite(torch.tensor(point["wer"]))


def test_curve_points_carry_the_epochs_logged_accuracies(untrained_experiment, small_data_dir):
    exp = untrained_experiment(U2PP, {"methods": ["ctc_greedy_search"]})
    (exp / "checkpoints").mkdir()
    (exp / "model_avg.pt").rename(exp / "checkpoints" / "epoch_1.pt")
    records = [
        {"epoch": 0, "step": 1, "elapsed": 1.0, "train_loss": 9.0, "train_attention_acc": 0.1},
        {"epoch": 0, "step": 10, "elapsed": 9.0, "train_loss": 7.0, "train_attention_acc": 0.3},
        {"epoch": 1, "step": 10, "elapsed": 12.0, "valid_loss": 8.0, "valid_attention_acc": 0.25},
    ]
    (exp / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    write_data_dir(small_data_dir.parent / "one", read_data_dir(small_data_dir)[:1])
    assert main(["curve", "--exp-dir", str(exp), "--data", str(small_data_dir.parent / "one")]) == 0
    (point,) = json.loads((exp / "wer_curve.json").read_text())
    assert point["elapsed"] == 12.0
    assert point["train_attention_acc"] == pytest.approx(0.2) and point["valid_attention_acc"] == 0.25
