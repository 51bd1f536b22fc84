"""Exported graphs equal PyTorch: every built-in encoder offline at several lengths (batched, with
padding, CMVN inside), the chunked graph chunk by chunk as sherpa-onnx runs it against the
encoder's own streaming, int8 copies, metadata and tokens.txt; models sherpa-onnx cannot run are
refused in one line."""
from __future__ import annotations

import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from speechforge.builder import build_model  # noqa: E402
from speechforge.deploy.wenet_chunk_ctc_graph import WenetChunkCtcGraph  # noqa: E402
from speechforge.deploy.wenet_ctc_export import export_wenet_ctc  # noqa: E402
from speechforge.errors import ConfigError  # noqa: E402

V, F = 12, 20
PIECES = ["<blank>", "<unk>", "▁", *"ABCDEFGH", "<sos/eos>"]


def asr_model(encoder: dict, **frontend):
    block = encoder.pop("block", {"type": "conformer", "conv_kernel": 5})
    config = {
        "vocab_size": V,
        "frontend": {"type": "fbank", "num_mel_bins": F, "kaldi_compatible": True, **frontend},
        "encoder": {"d_model": 16, "heads": 2, "num_blocks": 2, "ffn": {"type": "dense", "hidden": 24}, "encoder_block": block, **encoder},
        "losses": [{"type": "ctc"}],
    }
    model = build_model(config).eval()
    model.frontend.cmvn_mean.normal_()
    model.frontend.cmvn_istd.uniform_(0.5, 2.0)
    return with_trained_batch_norm_statistics(model)


def with_trained_batch_norm_statistics(model):
    """``model`` with random running statistics in its batch norms, as training leaves them
    (the initial zeros and ones would hide a graph that drops them)."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
    return model


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def metadata(path):
    return session(path).get_modelmeta().custom_metadata_map


ENCODERS = {
    "conformer_rel": {"type": "conformer"},
    "conformer_abs": {"type": "conformer", "pos_enc": "abs", "attention": {"type": "mha"}},
    "transformer": {"type": "transformer", "block": {"type": "transformer"}},
    "flash_rel": {"type": "conformer", "attention": {"type": "flash", "relative": True, "query_block": 8}},
    "flash_abs": {"type": "transformer", "block": {"type": "transformer"}, "attention": {"type": "flash", "query_block": 8}},
    "mamba": {"type": "conformer", "pos_enc": "none", "num_blocks": 1, "block": {"type": "mamba", "d_state": 4}},
    "bimamba": {"type": "conformer", "pos_enc": "none", "num_blocks": 1,
                "block": {"type": "mamba", "d_state": 4, "bidirectional": True}},
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``get(name) -> (model, export dir)``, each model of ENCODERS or STREAMING exported once
    per module (the streaming Conformer with its int8 copies)."""
    done = {}

    def get(name: str):
        if name not in done:
            torch.manual_seed(0)
            model = asr_model(dict({**ENCODERS, **STREAMING}[name]))
            out = tmp_path_factory.mktemp(name)
            export_wenet_ctc(model, PIECES, out, int8=name == "streaming_conformer")
            done[name] = model, out
        return done[name]

    return get


@pytest.mark.parametrize("name", ENCODERS)
def test_offline_graph_equals_pytorch_at_several_lengths(exported, name):
    model, out = exported(name)
    run = session(out / "model.onnx")
    for lengths in ([57], [123, 90], [301, 301, 44]):
        feats = torch.randn(len(lengths), max(lengths), F)
        feat_lens = torch.tensor(lengths)
        log_probs, out_lens = run.run(None, {"feats": feats.numpy(), "feats_length": feat_lens.numpy()})
        with torch.no_grad():
            x = (feats - model.frontend.cmvn_mean) * model.frontend.cmvn_istd
            enc, enc_lens = model.encoder(x, feat_lens, -1)
            want = model.ctc(enc)
        assert out_lens.tolist() == enc_lens.tolist()
        for i, n in enumerate(enc_lens.tolist()):  # padded frames are anything
            assert (torch.from_numpy(log_probs[i, :n]) - want[i, :n]).abs().max() <= 1e-4
    assert metadata(out / "model.onnx")["subsampling_factor"] == "4"
    assert metadata(out / "model.onnx")["vocab_size"] == str(V)
    assert not (out / "model-streaming.onnx").exists()  # not trained to stream


def run_like_sherpa(path, model, feats, chunk, left):
    """The chunked graph over one utterance the way sherpa-onnx's online WeNet model calls it:
    fixed-size caches starting at zero, the mask hiding what is not there yet."""
    encoder = model.encoder
    run = session(path)
    window = encoder.chunk_window(chunk)
    cache = chunk * left
    att_cache = torch.zeros(encoder.num_layers, encoder.heads, cache, 2 * encoder.output_dim // encoder.heads)
    meta = metadata(path)
    cnn_cache = torch.zeros(int(meta["num_blocks"]), 1, int(meta["output_size"]), int(meta["cnn_module_kernel"]) - 1)
    offset, outputs = cache, []
    for start in range(0, feats.size(0) - window.frames + 1, window.stride):
        chunk_index = offset // chunk - left
        mask = torch.ones(1, 1, cache + chunk, dtype=torch.bool)
        if chunk_index < left:
            mask[..., : cache - chunk_index * chunk] = False
        log_probs, att_cache, cnn_cache = run.run(None, {
            "chunk": feats[start : start + window.frames].unsqueeze(0).numpy(),
            "offset": torch.tensor([offset]).numpy(),
            "required_cache_size": torch.tensor([cache]).numpy(),
            "att_cache": att_cache.numpy() if torch.is_tensor(att_cache) else att_cache,
            "cnn_cache": cnn_cache.numpy() if torch.is_tensor(cnn_cache) else cnn_cache,
            "att_mask": mask.numpy(),
        })  # fmt: skip
        offset += log_probs.shape[1]
        outputs.append(torch.from_numpy(log_probs[0]))
    return torch.cat(outputs)


STREAMING = {
    "streaming_conformer": {"type": "conformer", "causal": True, "use_dynamic_chunk": True,
                      "block": {"type": "conformer", "conv_kernel": 5, "conv_norm": "layer_norm"}},
    "streaming_transformer": {"type": "transformer", "use_dynamic_chunk": True, "block": {"type": "transformer"}},
}  # fmt: skip


@pytest.mark.parametrize("name", STREAMING)
@pytest.mark.parametrize("chunk,left", [(4, 2), (16, 4)])
def test_chunked_graph_equals_pytorch_streaming_chunk_by_chunk(exported, name, chunk, left):
    model, out = exported(name)
    feats = torch.randn(500, F)
    got = run_like_sherpa(out / "model-streaming.onnx", model, feats, chunk, left)
    with torch.no_grad():
        x = (feats - model.frontend.cmvn_mean) * model.frontend.cmvn_istd
        enc, _ = model.encoder.forward_chunk_by_chunk(x.unsqueeze(0), torch.tensor([500]), chunk, left)
        want = model.ctc(enc)[0, : got.size(0)]
    assert got.size(0) >= want.size(0) - chunk  # all whole chunks
    assert (got - want).abs().max() <= 1e-4
    meta = metadata(out / "model-streaming.onnx")
    assert (meta["head"], meta["num_blocks"], meta["output_size"], meta["right_context"]) == ("2", "2", "16", "6")


def test_int8_copies_keep_the_metadata_and_stay_close(exported):
    _, out = exported("streaming_conformer")
    written = {p.name for p in out.iterdir()}
    assert written == {"tokens.txt", "model.onnx", "model.int8.onnx", "model-streaming.onnx", "model-streaming.int8.onnx"}
    assert metadata(out / "model-streaming.int8.onnx") == metadata(out / "model-streaming.onnx")
    feats = torch.randn(1, 200, F).numpy()
    lens = torch.tensor([200]).numpy()
    fp32 = session(out / "model.onnx").run(None, {"feats": feats, "feats_length": lens})[0]
    int8 = session(out / "model.int8.onnx").run(None, {"feats": feats, "feats_length": lens})[0]
    assert abs(fp32 - int8).max() < 0.5  # quantized, not broken
    ops = {node.op_type for node in onnx.load(str(out / "model.int8.onnx")).graph.node}
    assert "MatMulInteger" in ops  # the weight matmuls run in int8


def test_tokens_txt_is_one_symbol_and_id_per_line(exported):
    _, out = exported("transformer")
    lines = (out / "tokens.txt").read_text().splitlines()
    assert lines == [f"{piece} {i}" for i, piece in enumerate(PIECES)]


def test_a_frontend_sherpa_cannot_reproduce_is_refused(tmp_path):
    model = asr_model(dict(ENCODERS["transformer"]))
    model.frontend.kaldi_compatible = False
    with pytest.raises(ConfigError, match=r"^frontend.kaldi_compatible: sherpa-onnx computes Kaldi filterbanks"):
        export_wenet_ctc(model, PIECES, tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_streaming_model_with_a_convolution_that_sees_the_future_is_refused(tmp_path):
    model = asr_model({"type": "conformer", "use_dynamic_chunk": True})
    with pytest.raises(ConfigError, match="streaming needs causal: true"):
        export_wenet_ctc(model, PIECES, tmp_path)


def test_a_model_without_ctc_head_is_refused(tmp_path):
    model = asr_model(dict(ENCODERS["transformer"]))
    model.ctc = None
    with pytest.raises(ConfigError, match="^ctc_head: the WeNet CTC layout is a CTC model"):
        export_wenet_ctc(model, PIECES, tmp_path)


def test_chunk_graph_keeps_every_input_sherpa_passes(exported):
    _, out = exported("streaming_conformer")
    names = [i.name for i in session(out / "model-streaming.onnx").get_inputs()]
    assert tuple(names) == WenetChunkCtcGraph.forward.__code__.co_varnames[1:7]
