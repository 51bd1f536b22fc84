"""The U2++ recipe config with a sentencepiece BPE tokenizer, stage by stage as ``run.sh``
runs it (tokenizer and n-gram LM, training, decoding) on the tiny data: the LM is over the BPE
units, and the LM-fused searches, ``attention_rescoring_lm`` among them, decode with it."""
from __future__ import annotations

from pathlib import Path

from speechforge.cli import main
from speechforge.data.data_dir import read_data_dir
from speechforge.decode.recognizer import LM_FILE
from speechforge.lm.ngram_lm import NgramLM
from speechforge.text.tokenizer import load_tokenizer

CONF = Path(__file__).resolve().parents[3] / "egs" / "librispeech" / "conf" / "u2pp_conformer_small.yaml"
BPE = ["tokenizer.type=bpe", "tokenizer.vocab_size=40", "lm.order=3"]
TINY = [
    "encoder.num_blocks=1", "encoder.d_model=32", "encoder.ffn.hidden=64", "encoder.subsampling_channels=8",
    "decoder.ffn.hidden=64", "train.max_epochs=1", "train.max_minutes=0", "train.progress_bar=false",
    "data.num_workers=0", "data.max_seconds=6", "scheduler.warmup_steps=1", "decode.beam_size=3",
]  # fmt: skip
LM_METHODS = ["ctc_prefix_beam_search_lm", "attention_rescoring_lm"]


def test_bpe_tokenizer_lm_training_and_lm_rescoring_through_the_recipe_stages(tmp_path, tiny_data_dir):
    exp, text = tmp_path / "exp", str(tiny_data_dir / "text")
    for stage in ("tokenizer", "lm"):  # stage 3
        assert main([stage, "--config", str(CONF), "--text", text, "--exp-dir", str(exp), *BPE]) == 0
    tokenizer = load_tokenizer(exp / "tokenizer")
    assert tokenizer.kind == "bpe" and tokenizer.vocab_size == 40
    transcripts = [u.text for u in read_data_dir(tiny_data_dir)]
    ids = [tokenizer.encode(t) for t in transcripts]
    assert sum(map(len, ids)) < sum(map(len, transcripts)) / 2  # units, not characters
    lm = NgramLM.load_arpa(exp / LM_FILE, tokenizer.pieces)
    assert lm.order == 3
    for sentence in ids:  # a training sentence is likelier than its tokens reversed, in BPE units
        forward = sum(lm.log_prob(((lm.bos, *sentence)[max(0, j - 1) : j + 1]), t) for j, t in enumerate([*sentence, lm.eos]))
        rev = sentence[::-1]
        backward = sum(lm.log_prob(((lm.bos, *rev)[max(0, j - 1) : j + 1]), t) for j, t in enumerate([*rev, lm.eos]))
        assert forward > backward or sentence == rev
    data = [f"data.train={tiny_data_dir}", f"data.valid={tiny_data_dir}"]
    assert main(["train", "--config", str(CONF), "--exp-dir", str(exp), *data, *BPE, *TINY]) == 0  # stage 5
    decoded = ["decode", "--exp-dir", str(exp), "--data", str(tiny_data_dir), "--method", *LM_METHODS, "--chunk-size", "-1", "4"]
    assert main(decoded) == 0  # stage 7
    for method in LM_METHODS:
        for label in (method, f"{method}@chunk4"):
            hyps = (exp / "decode" / tiny_data_dir.name / label / "hyp").read_text().splitlines()
            assert len(hyps) == len(transcripts), label
