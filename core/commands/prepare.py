"""``speechforge prepare --root DIR --out DATA [--splits ...]``: LibriSpeech layout to
Kaldi-style data dirs (``DATA/<split>/{wav.scp,text,utt2spk,utt2dur}``)."""
from __future__ import annotations

import argparse
from pathlib import Path

from speechforge.data.librispeech import prepare_librispeech

DEFAULT_SPLITS = ["train-clean-100", "dev-clean", "test-clean"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("prepare", help="LibriSpeech layout -> data dirs")
    parser.add_argument("--root", required=True, type=Path, help="corpus root (holding LibriSpeech/<split> or <split>)")
    parser.add_argument("--out", required=True, type=Path, help="where the data dirs go")
    parser.add_argument("--splits", nargs="+", default=DEFAULT_SPLITS, help="split names")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    prepare_librispeech(args.root, args.splits, args.out)
    return 0
