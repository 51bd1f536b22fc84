"""``speechforge export --exp-dir EXP [--out DIR]``: the model weights (averaged when
available), config and tokenizer in one directory; plugins add their artefacts
(``export_model`` hook). ``model.pt`` keeps the plugin entries of the checkpoint it came from."""
from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from speechforge.config import save_config
from speechforge.decode.recognizer import Recognizer
from speechforge.train.checkpoint import load_checkpoint, plugin_entries, save_checkpoint

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
    save_checkpoint({**entries, "model": recognizer.model.state_dict()}, out / "model.pt")
    save_config(recognizer.config, out / "config.yaml")
    shutil.copytree(args.exp_dir / "tokenizer", out / "tokenizer", dirs_exist_ok=True)
    written = recognizer.host.hook.export_model(model=recognizer.model, config=recognizer.config, out_dir=out)
    log.info("exported to %s (%s)", out, ", ".join(str(p) for paths in written for p in paths) or "no plugin artefacts")
    return 0
