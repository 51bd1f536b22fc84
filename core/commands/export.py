"""``speechforge export --exp-dir EXP [--out DIR]``: the model weights (averaged when
available), config and tokenizer in one directory; plugins add their artefacts
(``export_model`` hook). ``model.pt`` keeps the plugin entries of the checkpoint it came from.
A quantized experiment (``quantizer:``) is exported packed: ``model.pt`` holds the
quantizer's packed state dict (``Quantizer.export``), which ``speechforge.load(DIR)`` runs as
it is."""
from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from speechforge.builder import build_quantizer
from speechforge.config import save_config
from speechforge.decode.recognizer import EXPORTED, Recognizer
from speechforge.train.checkpoint import PACKED, load_checkpoint, plugin_entries, save_checkpoint

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("export", help="export a trained model")
    parser.add_argument("--exp-dir", required=True, type=Path)
    parser.add_argument("--out", type=Path, help="default: EXP/export")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out = args.out or args.exp_dir / "export"
    recognizer = Recognizer(args.exp_dir, cpu_inference=False)  # the model as built, for plugins
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
    log.info("exported to %s (%s)", out, ", ".join(str(p) for paths in written for p in paths) or "no plugin artefacts")
    return 0
