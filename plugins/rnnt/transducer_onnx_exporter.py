"""``speechforge export --format onnx`` of a transducer: icefall's encoder / decoder / joiner
layout, which sherpa-onnx's ``OfflineRecognizer.from_transducer`` runs (offline; no streaming
graph, a model trained to stream is exported at full context).

Writes, into the export directory:

- ``encoder.onnx``: ``x`` (N, T, F) Kaldi filterbanks of samples in [-1, 1], ``x_lens`` (N,)
  int64 → ``encoder_out`` (N, T', J) after the joiner's encoder projection, ``encoder_out_lens``
  (N,); CMVN inside (:class:`TransducerEncoderGraph`);
- ``decoder.onnx``: ``y`` (N, context_size) int64 → ``decoder_out`` (N, J) after the joiner's
  predictor projection; metadata ``context_size`` and ``vocab_size``, the two values
  sherpa-onnx reads (and requires) from the decoder;
- ``joiner.onnx``: ``encoder_out`` (N, J), ``decoder_out`` (N, J) → ``logit`` (N, V);
- ``tokens.txt``, and with ``int8`` an ``*.int8.onnx`` copy of each graph.

What sherpa-onnx assumes, so what the export checks before it writes anything: the blank is id
0 (its greedy and beam searches hard-code it); the decoder sees only the last ``context_size``
tokens with no state carried between calls, which is the ``stateless`` predictor, not the
``lstm`` one.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import cast

import torch
from torch import nn

from speechforge.deploy.onnx_exporter import OnnxExporter
from speechforge.deploy.onnx_files import add_metadata, check_follows_input, quantize_int8, trace_to_onnx
from speechforge.deploy.sherpa_support import check_encoder, check_features
from speechforge.deploy.tokens_file import write_tokens
from speechforge.errors import ConfigError
from speechforge.modules.block_stack_encoder import BlockStackEncoder
from speechforge.modules.fbank_frontend import FbankFrontend
from speechforge_plugins.rnnt.stateless_predictor import StatelessPredictor
from speechforge_plugins.rnnt.transducer_decoder import TransducerDecoder
from speechforge_plugins.rnnt.transducer_decoder_graph import TransducerDecoderGraph
from speechforge_plugins.rnnt.transducer_encoder_graph import TransducerEncoderGraph
from speechforge_plugins.rnnt.transducer_joiner_graph import TransducerJoinerGraph

#: the blank id sherpa-onnx's transducer searches hard-code
SHERPA_BLANK = 0
ENCODER_INPUTS, ENCODER_OUTPUTS = ("x", "x_lens"), ("encoder_out", "encoder_out_lens")
DECODER_INPUTS, DECODER_OUTPUTS = ("y",), ("decoder_out",)
JOINER_INPUTS, JOINER_OUTPUTS = ("encoder_out", "decoder_out"), ("logit",)


class TransducerOnnxExporter(OnnxExporter):
    """icefall's transducer layout for sherpa-onnx's ``from_transducer``."""

    layout = "icefall transducer"

    def check(self, model: nn.Module) -> None:
        checked_parts(model)

    def export(self, model: nn.Module, pieces: Sequence[str], out_dir: Path, *, int8: bool) -> list[Path]:
        import onnx  # noqa: F401  (fail early, before any file is written, when it is missing)

        frontend, encoder, decoder = checked_parts(model)
        model.eval()
        if len(pieces) != decoder.vocab_size:
            raise ConfigError(f"tokenizer: {len(pieces)} pieces for a model of {decoder.vocab_size} outputs")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = [write_tokens(pieces, out_dir / "tokens.txt")]
        predictor = cast(StatelessPredictor, decoder.predictor)  # checked_parts refuses any other
        graphs = [
            (export_encoder(TransducerEncoderGraph(frontend, encoder, decoder.joiner), frontend.output_dim, out_dir / "encoder.onnx"),
             {"model_type": "speechforge_transducer", "subsampling_factor": encoder.subsampling_rate}),
            (export_decoder(TransducerDecoderGraph(decoder), predictor.context_size, decoder.vocab_size, out_dir / "decoder.onnx"),
             {"context_size": predictor.context_size, "vocab_size": decoder.vocab_size}),
            (export_joiner(TransducerJoinerGraph(decoder.joiner), decoder.joiner.dim, out_dir / "joiner.onnx"),
             {"joiner_dim": decoder.joiner.dim}),
        ]  # fmt: skip
        for path, meta in graphs:
            add_metadata(path, meta)
            written.append(path)
            if int8:
                written.append(quantize_int8(path, path.with_suffix(".int8.onnx"), meta))
        return written


def checked_parts(model: nn.Module) -> tuple[FbankFrontend, BlockStackEncoder, TransducerDecoder]:
    """The frontend, encoder and transducer decoder of a transducer sherpa-onnx can run.

    Raises: ConfigError (one line) for features or an encoder sherpa-onnx cannot reproduce
    (as for every layout), several transducer decoders, a blank other than id 0, or a
    predictor that carries a state (sherpa-onnx's decoder is a function of the last
    ``context_size`` tokens).
    """
    frontend, encoder = check_features(model), check_encoder(model)
    transducers = [(name, module) for name, module in model.named_modules() if isinstance(module, TransducerDecoder)]
    if len(transducers) != 1:
        names = ", ".join(name for name, _ in transducers) or "none"
        raise ConfigError(f"decoders: sherpa-onnx's transducer layout holds one transducer decoder; the model has {names}")
    name, decoder = transducers[0]
    if decoder.blank_id != SHERPA_BLANK:
        raise ConfigError(
            f"{name}: sherpa-onnx's transducer searches take id {SHERPA_BLANK} as the blank; this transducer's blank is {decoder.blank_id}"
        )
    if not isinstance(decoder.predictor, StatelessPredictor):
        raise ConfigError(
            f"{name}.predictor: sherpa-onnx's transducer decoder reads only the last context_size tokens and keeps no "
            f"state between calls, so the {type(decoder.predictor).__name__}'s state has no place in it; train with "
            f"predictor: {{type: stateless, context_size: 2}} (as egs/librispeech/conf/usm_rnnt_small_stateless.yaml) to export"
        )
    return frontend, encoder, decoder


def export_encoder(graph: TransducerEncoderGraph, feat_dim: int, path: Path) -> Path:
    """Trace on two utterances of 200 and 150 frames, then check on 1 x 333."""
    example = (torch.randn(2, 200, feat_dim), torch.tensor([200, 150]))
    axes = {"x": {0: "N", 1: "T"}, "x_lens": {0: "N"}, "encoder_out": {0: "N", 1: "T_out"}, "encoder_out_lens": {0: "N"}}
    trace_to_onnx(graph, example, path, ENCODER_INPUTS, ENCODER_OUTPUTS, axes)
    check_follows_input(graph, path, (torch.randn(1, 333, feat_dim), torch.tensor([333])))
    return path


def export_decoder(graph: TransducerDecoderGraph, context_size: int, vocab_size: int, path: Path) -> Path:
    """Trace on 3 contexts, then check on 5, one of them at the start (-1 before the blank)."""
    example = torch.randint(0, vocab_size, (3, context_size))
    trace_to_onnx(graph, (example,), path, DECODER_INPUTS, DECODER_OUTPUTS, {"y": {0: "N"}, "decoder_out": {0: "N"}})
    check = torch.randint(0, vocab_size, (5, context_size))
    check[0, :-1], check[0, -1] = -1, SHERPA_BLANK
    check_follows_input(graph, path, (check,))
    return path


def export_joiner(graph: TransducerJoinerGraph, joiner_dim: int, path: Path) -> Path:
    """Trace on 4 pairs, then check on 7."""
    axes = {"encoder_out": {0: "N"}, "decoder_out": {0: "N"}, "logit": {0: "N"}}
    trace_to_onnx(graph, (torch.randn(4, joiner_dim), torch.randn(4, joiner_dim)), path, JOINER_INPUTS, JOINER_OUTPUTS, axes)
    check_follows_input(graph, path, (torch.randn(7, joiner_dim), torch.randn(7, joiner_dim)))
    return path
