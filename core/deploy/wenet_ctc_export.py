"""``speechforge export --format onnx``: a CTC model as sherpa-onnx's WeNet CTC layout.

Writes, into the export directory: ``model.onnx`` (offline: features and lengths in, CTC
log-probabilities and lengths out), for a model trained to stream also ``model-streaming.onnx``
(one chunk with attention and convolution caches as inputs and outputs), ``tokens.txt``, and
with ``int8`` a dynamically quantized copy of each graph (``*.int8.onnx``, onnxruntime's
quantizer, int8 weights of the matrix multiplications). Each graph carries the metadata
sherpa-onnx reads (``vocab_size``, ``subsampling_factor``; for the chunked one also ``head``,
``num_blocks``, ``output_size``, ``cnn_module_kernel``, ``right_context``).

Each graph is traced and checked at an untraced length as :mod:`speechforge.deploy.onnx_files`
says. :class:`WenetCtcExporter` is the layout ``speechforge export --format onnx`` writes for a
model no plugin claims (``onnx_exporter`` hook).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from speechforge.deploy.onnx_exporter import OnnxExporter
from speechforge.deploy.onnx_files import add_metadata, check_follows_input, quantize_int8, trace_to_onnx
from speechforge.deploy.sherpa_support import check_exportable, check_offline, check_streaming, conv_kernel, is_streaming
from speechforge.deploy.tokens_file import write_tokens
from speechforge.deploy.wenet_chunk_ctc_graph import WenetChunkCtcGraph
from speechforge.deploy.wenet_ctc_graph import WenetCtcGraph
from speechforge.errors import ConfigError

#: chunk and left chunks of the traced example (the graph takes any at run time)
EXAMPLE_CHUNK, EXAMPLE_LEFT_CHUNKS = 16, 4

OFFLINE_INPUTS = ("feats", "feats_length")
OFFLINE_OUTPUTS = ("log_probs", "log_probs_length")
CHUNK_INPUTS = ("chunk", "offset", "required_cache_size", "att_cache", "cnn_cache", "att_mask")
CHUNK_OUTPUTS = ("log_probs", "next_att_cache", "next_cnn_cache")


class WenetCtcExporter(OnnxExporter):
    """sherpa-onnx's WeNet CTC layout (``from_wenet_ctc``), offline and, for a model trained
    to stream, chunked."""

    layout = "WeNet CTC"

    def check(self, model: nn.Module) -> None:
        check_exportable(model)

    def export(self, model: nn.Module, pieces: Sequence[str], out_dir: Path, *, int8: bool) -> list[Path]:
        return export_wenet_ctc(model, pieces, out_dir, int8=int8)


def export_wenet_ctc(model: nn.Module, pieces: Sequence[str], out_dir: Path, *, int8: bool = False) -> list[Path]:
    """Export ``model`` (an ``asr`` model with Kaldi-compatible features and a CTC head).

    Args:
        model: the model; put in eval mode.
        pieces: the tokenizer's pieces, index = token id.
        out_dir: where the files go (created).
        int8: also write the int8 copies.
    Returns: the paths written.
    Raises: ConfigError (one line) for a model sherpa-onnx cannot run, or a graph that does
        not follow the input length.
    """
    import onnx  # noqa: F401  (fail early, before any file is written, when it is missing)

    frontend, encoder, ctc = check_offline(model)
    streaming = is_streaming(encoder)
    has_conv = check_streaming(encoder) if streaming else False
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab_size = ctc.ctc_lo.out_features
    if len(pieces) != vocab_size:
        raise ConfigError(f"tokenizer: {len(pieces)} pieces for a model of {vocab_size} outputs")
    written = [write_tokens(pieces, out_dir / "tokens.txt")]
    common = {"vocab_size": vocab_size, "subsampling_factor": encoder.subsampling_rate, "model_type": "speechforge_ctc"}
    graphs = [("model.onnx", export_offline(WenetCtcGraph(frontend, encoder, ctc), frontend.output_dim, out_dir / "model.onnx"), common)]
    if streaming:
        meta = {
            **common,
            "head": encoder.heads,
            "num_blocks": encoder.num_layers,
            "output_size": encoder.output_dim,
            "cnn_module_kernel": conv_kernel(encoder),
            "right_context": encoder.embed.right_context,
        }
        graph = WenetChunkCtcGraph(frontend, encoder, ctc, has_conv)
        graphs.append(("model-streaming.onnx", export_chunked(graph, frontend.output_dim, out_dir / "model-streaming.onnx"), meta))
    for name, path, meta in graphs:
        add_metadata(path, meta)
        written.append(path)
        if int8:
            written.append(quantize_int8(path, out_dir / name.replace(".onnx", ".int8.onnx"), meta))
    return written


def export_offline(graph: WenetCtcGraph, feat_dim: int, path: Path) -> Path:
    """Trace the offline graph on two utterances of 200 and 150 frames, then check it on 1 x 333."""
    example = (torch.randn(2, 200, feat_dim), torch.tensor([200, 150]))
    axes = {"feats": {0: "B", 1: "T"}, "feats_length": {0: "B"}, "log_probs": {0: "B", 1: "T_out"}, "log_probs_length": {0: "B"}}
    trace_to_onnx(graph, example, path, OFFLINE_INPUTS, OFFLINE_OUTPUTS, axes)
    check_follows_input(graph, path, (torch.randn(1, 333, feat_dim), torch.tensor([333])))
    return path


def chunk_inputs(graph: WenetChunkCtcGraph, feat_dim: int, chunk: int, left_chunks: int) -> tuple[Tensor, ...]:
    """Inputs of a first chunk as sherpa-onnx makes them: zero caches hidden by the mask."""
    encoder = graph.encoder
    cache = chunk * left_chunks
    window = encoder.chunk_window(chunk).frames
    d_head = encoder.output_dim // encoder.heads
    att_cache = torch.zeros(encoder.num_layers, encoder.heads, cache, 2 * d_head)
    cnn_cache = torch.zeros(encoder.num_layers, 1, encoder.output_dim, conv_kernel(encoder) - 1)
    att_mask = torch.ones(1, 1, cache + chunk, dtype=torch.bool)
    att_mask[..., :cache] = False
    offset = torch.tensor([cache])
    return torch.randn(1, window, feat_dim), offset, offset.clone(), att_cache, cnn_cache, att_mask


def export_chunked(graph: WenetChunkCtcGraph, feat_dim: int, path: Path) -> Path:
    """Trace the chunked graph at chunk 16 with 4 left chunks, then check it at chunk 8 with 2."""
    axes = {
        "chunk": {1: "T"},
        "att_cache": {2: "T_cache"},
        "att_mask": {2: "T_att"},
        "log_probs": {1: "T_out"},
        "next_att_cache": {2: "T_cache"},
    }
    trace_to_onnx(graph, chunk_inputs(graph, feat_dim, EXAMPLE_CHUNK, EXAMPLE_LEFT_CHUNKS), path, CHUNK_INPUTS, CHUNK_OUTPUTS, axes)
    check_follows_input(graph, path, chunk_inputs(graph, feat_dim, 8, 2))
    return path
