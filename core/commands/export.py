"""``speechforge export --exp-dir EXP [--out DIR] [--format onnx [--int8]]``: the model weights
(averaged when available), config and tokenizer in one directory; plugins add their artefacts
(``export_model`` hook). ``model.pt`` keeps the plugin entries of the checkpoint it came from.
A quantized experiment (``quantizer:``) is exported packed: ``model.pt`` holds the
quantizer's packed state dict (``Quantizer.export``), which ``speechforge.load(DIR)`` runs as
it is. ``--format onnx`` adds, beside ``model.pt``, the model in the ONNX layout sherpa-onnx
runs: the one a plugin offers for it (``onnx_exporter`` hook; the rnnt plugin's transducer
layout), else the WeNet CTC layout (:mod:`speechforge.deploy.wenet_ctc_export`); needs the
``onnx`` and ``onnxruntime`` packages."""
from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from torch import nn

from speechforge.builder import build_quantizer
from speechforge.config import save_config
from speechforge.decode.recognizer import EXPORTED, Recognizer
from speechforge.deploy.onnx_exporter import OnnxExporter
from speechforge.deploy.wenet_ctc_export import WenetCtcExporter
from speechforge.errors import ConfigError
from speechforge.plugins import PluginHost
from speechforge.train.checkpoint import PACKED, load_checkpoint, plugin_entries, save_checkpoint

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("export", help="export a trained model")
    parser.add_argument("--exp-dir", required=True, type=Path)
    parser.add_argument("--out", type=Path, help="default: EXP/export")
    parser.add_argument(
        "--format",
        choices=("pt", "onnx"),
        default="pt",
        help="onnx: also the ONNX graphs and tokens.txt for sherpa-onnx (a CTC model: model.onnx, + model-streaming.onnx "
        "when trained to stream; a transducer: encoder.onnx, decoder.onnx, joiner.onnx)",
    )
    parser.add_argument("--int8", action="store_true", help="with --format onnx: also int8 dynamic-quantized copies")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.int8 and args.format != "onnx":
        raise ConfigError("--int8: quantizes the ONNX graphs; give --format onnx")
    out = args.out or args.exp_dir / "export"
    recognizer = Recognizer(args.exp_dir, cpu_inference=False)  # the model as built, for plugins
    exporter = None
    if args.format == "onnx":  # refuse a model sherpa-onnx cannot run before writing anything
        exporter = onnx_exporter(recognizer.host, recognizer.model)
        exporter.check(recognizer.model)
    out.mkdir(parents=True, exist_ok=True)
    entries = plugin_entries(load_checkpoint(recognizer.checkpoint))
    quantizer = build_quantizer(recognizer.config, recognizer.host)
    if quantizer is None:
        weights = {"model": recognizer.model.state_dict()}
    else:
        weights = {"model": quantizer.export(recognizer.model), PACKED: True}
    save_checkpoint({**entries, **weights}, out / EXPORTED)
    save_config(recognizer.config, out / "config.yaml")
    shutil.copytree(args.exp_dir / "tokenizer", out / "tokenizer", dirs_exist_ok=True)
    written = recognizer.host.hook.export_model(model=recognizer.model, config=recognizer.config, out_dir=out)
    if exporter is not None:
        written = [*written, exporter.export(recognizer.model, recognizer.tokenizer.pieces, out, int8=args.int8)]
    log.info("exported to %s (%s)", out, ", ".join(str(p) for paths in written for p in paths) or "no plugin artefacts")
    return 0


def onnx_exporter(host: PluginHost, model: nn.Module) -> OnnxExporter:
    """The layout ``--format onnx`` writes ``model`` in: the one plugin offers for it, else the
    WeNet CTC layout. Raises: ConfigError when several plugins offer one."""
    offered = host.hook.onnx_exporter(model=model)
    if len(offered) > 1:
        layouts = ", ".join(exporter.layout for exporter in offered)
        raise ConfigError(f"--format onnx: several plugins offer an ONNX layout for this model ({layouts}); the export writes one")
    return offered[0] if offered else WenetCtcExporter()
