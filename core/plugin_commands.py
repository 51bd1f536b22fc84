"""What a plugin's ``add_commands`` hook receives: the ``speechforge`` sub-parsers, with every
subcommand it adds attributed to the plugin in ``speechforge --help``."""
from __future__ import annotations

import argparse
from typing import Any

from speechforge.errors import PluginError


class PluginCommands:
    """The ``speechforge`` sub-parsers as one plugin sees them.

    ``add_parser`` takes argparse's arguments and returns the subcommand's
    :class:`argparse.ArgumentParser`; the plugin adds its options there and sets
    ``parser.set_defaults(run=function)``, where ``function(args: argparse.Namespace) -> int``
    is the exit status, exactly as the core commands do. Taking a name that is already a
    command is an error naming both owners.
    """

    def __init__(self, subparsers: argparse._SubParsersAction, plugin: str, owners: dict[str, str]) -> None:
        self._subparsers = subparsers
        self.plugin = plugin
        self._owners = owners  # command name -> plugin that added it ("speechforge" for core)

    def add_parser(self, name: str, *, help: str = "", **kwargs: Any) -> argparse.ArgumentParser:
        if name in self._owners:
            raise PluginError(f"command {name!r} is added twice: first by {self._owners[name]!r}, then by {self.plugin!r}")
        self._owners[name] = self.plugin
        attributed = f"{help} [plugin {self.plugin}]" if help else f"[plugin {self.plugin}]"
        return self._subparsers.add_parser(name, help=attributed, **kwargs)
