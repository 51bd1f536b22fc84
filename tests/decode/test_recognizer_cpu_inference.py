"""The Recognizer runs its model through ``optimize_for_cpu_inference``: the same encodings as
the model as built (``cpu_inference=False``, what ``speechforge export`` takes)."""
from __future__ import annotations

import torch

from speechforge.builder import build_model
from speechforge.config import save_config
from speechforge.data.audio import load_audio
from speechforge.data.data_dir import read_data_dir
from speechforge.decode.recognizer import Recognizer
from speechforge.modules.packed_linear import PackedLinear
from speechforge.text.char_tokenizer import CharTokenizer
from speechforge.train.checkpoint import save_checkpoint


def test_recognizer_model_is_transformed_and_encodes_the_same(tmp_path, tiny_data_dir, tiny_config):
    exp = tmp_path / "exp"
    tokenizer = CharTokenizer.train([u.text for u in read_data_dir(tiny_data_dir)])
    tokenizer.save(exp / "tokenizer")
    config = {**tiny_config, "vocab_size": tokenizer.vocab_size}
    save_config(config, exp / "config.yaml")
    save_checkpoint({"model": build_model(config).state_dict()}, exp / "model_avg.pt")
    fast, plain = Recognizer(exp), Recognizer(exp, cpu_inference=False)
    assert any(isinstance(m, PackedLinear) for m in fast.model.modules())
    assert not any(isinstance(m, PackedLinear) for m in plain.model.modules())
    wave = load_audio(read_data_dir(tiny_data_dir)[0].audio, fast.sample_rate).unsqueeze(0)
    lengths = torch.tensor([wave.size(1)])
    with torch.no_grad():
        got, got_lens = fast.model.encode(wave, lengths, -1, -1)
        expected, expected_lens = plain.model.encode(wave, lengths, -1, -1)
    assert torch.equal(got_lens, expected_lens)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert fast.decode_batch(wave, lengths, "ctc_greedy_search") == plain.decode_batch(wave, lengths, "ctc_greedy_search")
