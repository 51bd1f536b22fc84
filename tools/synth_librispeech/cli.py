"""The command line: flags, one-line errors, exit codes (0 done, 1 error, 130 interrupted)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from .corpus import generate
from .errors import SynthError


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The flags (``sys.argv[1:]`` when ``argv`` is None); a bad value exits 2 with usage."""
    parser = argparse.ArgumentParser(
        prog="synth_librispeech",
        description="Generate a synthetic English speech corpus (eSpeak NG, self-written text) "
                    "in the exact LibriSpeech layout: DIR/LibriSpeech/{train-clean-100,dev-clean,"
                    "test-clean}. Re-running with the same settings skips finished work.")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="output directory; the corpus goes to DIR/LibriSpeech")
    parser.add_argument("--train-utts", type=_positive, default=6750, metavar="N",
                        help="utterances in train-clean-100 (default 6750, about 7.5 hours)")
    parser.add_argument("--dev-utts", type=_positive, default=200, metavar="N",
                        help="utterances in dev-clean (default 200)")
    parser.add_argument("--test-utts", type=_positive, default=200, metavar="N",
                        help="utterances in test-clean (default 200)")
    parser.add_argument("--train-speakers", type=_positive, default=40, metavar="N",
                        help="synthetic speakers in train-clean-100 (default 40)")
    parser.add_argument("--eval-speakers", type=_positive, default=8, metavar="N",
                        help="synthetic speakers in each of dev-clean and test-clean (default 8)")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="random seed; the same seed and sizes give byte-identical output "
                             "(default 0)")
    parser.add_argument("--jobs", type=_positive, default=2, metavar="J",
                        help="parallel synthesis processes; does not change the output (default 2)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a corpus this tool made in DIR with other settings")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Generate the corpus the flags ask for; returns the exit code."""
    args = parse_args(argv)
    try:
        generate(args)
    except SynthError as error:
        print(f"synth_librispeech: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("synth_librispeech: interrupted; run the same command again to resume",
              file=sys.stderr)
        return 130
    return 0
