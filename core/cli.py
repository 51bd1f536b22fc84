"""The ``speechforge`` command: one subcommand per module in :mod:`speechforge.commands`, then
those that plugins add through the ``add_commands`` hook."""
from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys
from collections.abc import Sequence

from speechforge.errors import SpeechforgeError
from speechforge.plugin_commands import PluginCommands
from speechforge.plugins import PluginHost, default_host

#: A full disk or quota is the machine's state, not a bug: one line naming the file, no traceback.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)

#: Subcommand modules, in the order ``--help`` lists them. Each has ``add_parser`` and ``run``.
COMMANDS = ("plugins", "config", "prepare", "cmvn", "tokenizer", "lm", "train", "average", "decode", "stream", "score", "curve", "report", "compare", "export")


def make_parser(host: PluginHost | None = None) -> argparse.ArgumentParser:
    """The core subcommands, then every plugin's (``host``: default, the process's plugins)."""
    parser = argparse.ArgumentParser(prog="speechforge", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"speechforge.commands.{name}")
        module.add_parser(sub)
    add_plugin_commands(sub, host or default_host())
    return parser


def add_plugin_commands(sub: argparse._SubParsersAction, host: PluginHost) -> None:
    """Let each plugin add its subcommands; one that fails is recorded as a failed plugin (once:
    a later parser skips it)."""
    owners = dict.fromkeys(sub.choices, "speechforge")
    packages = {p.name: p.package for p in host.loaded}
    failed = {f.name for f in host.failed}
    for impl in host.hook.add_commands.get_hookimpls():
        if impl.plugin_name in failed:
            continue
        try:
            impl.function(commands=PluginCommands(sub, impl.plugin_name, owners))
        except (Exception, SystemExit) as error:
            host.fail(impl.plugin_name, packages.get(impl.plugin_name, "unknown"), error)


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
    except OSError as error:
        if error.errno not in DISK_FULL:
            raise
        print(f"speechforge {args.command}: error: {error.filename or 'a write'}: {error.strerror}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
