"""A transducer exported in icefall's layout equals PyTorch graph by graph: the encoder on
[-1, 1]-scale Kaldi filterbanks (what sherpa-onnx feeds it, digital silence included) at several
lengths and batched with sherpa-onnx's padding, against the model's own int16-scale frontend;
the decoder on sliding contexts against the predictor run over the whole sequence; the joiner;
int8 copies and metadata; models sherpa-onnx cannot run are refused in one line."""
from __future__ import annotations

import pytest
import torch
import torchaudio

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from speechforge.builder import build_model  # noqa: E402
from speechforge.errors import ConfigError  # noqa: E402
from speechforge.modules.fbank_frontend import KALDI_FBANK  # noqa: E402
from speechforge_plugins.rnnt.transducer_onnx_exporter import TransducerOnnxExporter  # noqa: E402
from tests.deploy.test_wenet_ctc_export import metadata, session, with_trained_batch_norm_statistics  # noqa: E402

F, J = 20, 12
PIECES = ["<blank>", "<unk>", "▁", *"ABCDEFGH", "<sos/eos>"]
V = len(PIECES)
#: what sherpa-onnx pads a batch's shorter utterances with (log 1e-10)
SHERPA_PADDING = -23.025850929940457
STATELESS = {"type": "stateless", "dim": 8, "context_size": 2}


def transducer_model(predictor: dict, **frontend):
    config = {
        "vocab_size": V,
        "frontend": {"type": "fbank", "num_mel_bins": F, "kaldi_compatible": True, **frontend},
        "encoder": {"type": "conformer", "d_model": 16, "heads": 2, "num_blocks": 2, "ffn": {"type": "dense", "hidden": 24},
                    "encoder_block": {"type": "conformer", "conv_kernel": 5}},
        "decoder": {"type": "transducer", "predictor": predictor, "joiner": {"type": "linear", "dim": J}},
        "losses": [{"type": "rnnt", "backend": "native"}],
    }  # fmt: skip
    model = build_model(config).eval()
    with torch.no_grad():
        model.frontend.cmvn_mean.normal_(10.0, 2.0)  # int16-scale log-mels sit around 10
        model.frontend.cmvn_istd.uniform_(0.2, 0.5)
        return with_trained_batch_norm_statistics(model)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``get(context_size) -> (model, export dir)``, each exported once per module (context 2
    with its int8 copies)."""
    done = {}

    def get(context_size: int):
        if context_size not in done:
            torch.manual_seed(context_size)
            model = transducer_model({**STATELESS, "context_size": context_size})
            out = tmp_path_factory.mktemp(f"context{context_size}")
            TransducerOnnxExporter().export(model, PIECES, out, int8=context_size == 2)
            done[context_size] = model, out
        return done[context_size]

    return get


def waves():
    """Noisy tones of 0.57, 1.23 and 0.9 s, the last after 0.3 s of digital silence (Kaldi's
    log floor at both sample scales)."""
    gen = torch.Generator().manual_seed(0)
    out = []
    for seconds, freq in ((0.57, 300.0), (1.23, 520.0), (0.6, 410.0)):
        t = torch.arange(int(seconds * 16000)) / 16000
        out.append(0.3 * torch.sin(2 * torch.pi * freq * t) + 0.01 * torch.randn(t.numel(), generator=gen))
    out[2] = torch.cat((torch.zeros(4800), out[2]))
    return out


def sherpa_features(wave):
    """(T, F) filterbanks as sherpa-onnx computes them for a transducer: Kaldi's, on samples
    in [-1, 1] (kaldi-native-fbank with sherpa-onnx's defaults, which KALDI_FBANK copies)."""
    return torchaudio.compliance.kaldi.fbank(wave.unsqueeze(0), num_mel_bins=F, dither=0.0, **KALDI_FBANK)


@pytest.mark.parametrize("context_size", [1, 2])
def test_encoder_graph_equals_pytorch_at_several_lengths_and_batched(exported, context_size):
    model, out = exported(context_size)
    run = session(out / "encoder.onnx")
    feats = [sherpa_features(w) for w in waves()]
    assert (feats[2][:20] < -15.9).all()  # the silence is on the floor
    want = []
    for wave, x in zip(waves(), feats):
        with torch.no_grad():
            enc, enc_lens = model.encode(wave.unsqueeze(0), torch.tensor([wave.numel()]), -1)
            want.append(model.decoder.joiner.encoder_proj(enc)[0])  # (T', J)
        got, got_lens = run.run(None, {"x": x.unsqueeze(0).numpy(), "x_lens": torch.tensor([x.size(0)]).numpy()})
        assert got_lens.tolist() == enc_lens.tolist()
        assert (torch.from_numpy(got[0]) - want[-1]).abs().max() <= 1e-4
    batch = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True, padding_value=SHERPA_PADDING)
    got, got_lens = run.run(None, {"x": batch.numpy(), "x_lens": torch.tensor([x.size(0) for x in feats]).numpy()})
    assert got_lens.tolist() == [w.size(0) for w in want]
    for i, w in enumerate(want):  # padded frames are anything
        assert (torch.from_numpy(got[i, : w.size(0)]) - w).abs().max() <= 1e-4


@pytest.mark.parametrize("context_size", [1, 2])
def test_decoder_graph_on_the_last_tokens_equals_the_predictor_over_the_sequence(exported, context_size):
    model, out = exported(context_size)
    tokens = [0, 5, 3, 3, 9, 2, 7]  # the blank as start symbol, then the hypothesis
    with torch.no_grad():
        want, _ = model.decoder(torch.tensor([tokens]))  # (1, U, J) from the initial state
    padded = [-1] * (context_size - 1) + tokens  # sherpa-onnx's start: -1, ..., -1, blank
    y = torch.tensor([padded[u : u + context_size] for u in range(len(tokens))])  # (U, context_size)
    (got,) = session(out / "decoder.onnx").run(None, {"y": y.numpy()})
    assert (torch.from_numpy(got) - want[0]).abs().max() <= 1e-4
    meta = metadata(out / "decoder.onnx")
    assert (meta["context_size"], meta["vocab_size"]) == (str(context_size), str(V))


def test_joiner_graph_equals_pytorch(exported):
    model, out = exported(2)
    run = session(out / "joiner.onnx")
    for n in (1, 5, 9):
        enc, dec = torch.randn(n, J), torch.randn(n, J)
        (got,) = run.run(None, {"encoder_out": enc.numpy(), "decoder_out": dec.numpy()})
        with torch.no_grad():
            want = model.decoder.joiner(enc, dec)  # (n, V)
        assert got.shape == (n, V)
        assert (torch.from_numpy(got) - want).abs().max() <= 1e-4


def test_files_int8_copies_and_tokens(exported):
    _, out = exported(2)
    graphs = ("encoder", "decoder", "joiner")
    assert {p.name for p in out.iterdir()} == {"tokens.txt", *(f"{g}.onnx" for g in graphs), *(f"{g}.int8.onnx" for g in graphs)}
    for graph in graphs:
        assert metadata(out / f"{graph}.int8.onnx") == metadata(out / f"{graph}.onnx")
    assert {oct(p.stat().st_mode & 0o777) for p in out.iterdir()} == {"0o644"}  # shippable, not mkstemp's 0600
    assert "MatMulInteger" in {node.op_type for node in onnx.load(str(out / "encoder.int8.onnx")).graph.node}
    x = torch.randn(1, 200, F).numpy()
    lens = torch.tensor([200]).numpy()
    fp32 = session(out / "encoder.onnx").run(None, {"x": x, "x_lens": lens})[0]
    int8 = session(out / "encoder.int8.onnx").run(None, {"x": x, "x_lens": lens})[0]
    assert abs(fp32 - int8).max() < 0.5  # quantized, not broken
    assert (out / "tokens.txt").read_text().splitlines() == [f"{piece} {i}" for i, piece in enumerate(PIECES)]


def test_an_lstm_predictor_is_refused_with_what_to_use(tmp_path):
    model = transducer_model({"type": "lstm", "layers": 1, "hidden": 8, "dropout": 0.0})
    with pytest.raises(ConfigError) as error:
        TransducerOnnxExporter().export(model, PIECES, tmp_path / "out", int8=False)
    message = str(error.value)
    assert message.startswith("decoder.predictor: sherpa-onnx's transducer decoder reads only the last context_size tokens")
    assert "LSTMPredictor's state has no place in it" in message
    assert "predictor: {type: stateless, context_size: 2}" in message and "\n" not in message
    assert not (tmp_path / "out").exists()


def test_a_blank_other_than_zero_is_refused():
    model = transducer_model(STATELESS)
    model.decoder.blank_id = 3
    with pytest.raises(ConfigError, match="^decoder: sherpa-onnx's transducer searches take id 0 as the blank; this transducer's blank is 3$"):
        TransducerOnnxExporter().check(model)


def test_features_sherpa_cannot_reproduce_are_refused():
    model = transducer_model(STATELESS, kaldi_compatible=False)
    with pytest.raises(ConfigError, match="^frontend.kaldi_compatible: sherpa-onnx computes Kaldi filterbanks"):
        TransducerOnnxExporter().check(model)
