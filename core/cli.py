"""The ``speechforge`` command: one subcommand per module in :mod:`speechforge.commands`."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from speechforge.errors import SpeechforgeError

#: Subcommand modules, in the order ``--help`` lists them. Each has ``add_parser`` and ``run``.
COMMANDS = ("plugins", "config", "prepare", "cmvn", "tokenizer", "lm", "train", "average", "decode", "stream", "score", "curve", "report", "compare", "export")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="speechforge", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"speechforge.commands.{name}")
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return int(args.run(args) or 0)
    except SpeechforgeError as error:
        print(f"speechforge {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
