"""``speechforge cmvn --config CONF --data DIR --out cmvn.json``: global CMVN statistics of
the config's frontend features over a data dir."""
from __future__ import annotations

import argparse
from pathlib import Path

from speechforge.config import load_config
from speechforge.data.cmvn import compute_cmvn, save_cmvn
from speechforge.registry import build_component


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("cmvn", help="compute global CMVN statistics")
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path, help="data dir (training set)")
    parser.add_argument("--out", required=True, type=Path, help="JSON file to write")
    parser.add_argument("--max-utterances", type=int, default=0, help="use the first N utterances (0: all)")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    frontend_config = {k: v for k, v in (config.get("frontend") or {"type": "fbank"}).items() if k != "cmvn_stats"}
    frontend = build_component("frontend", frontend_config, "frontend")
    save_cmvn(compute_cmvn(args.data, frontend, args.max_utterances), args.out)
    return 0
