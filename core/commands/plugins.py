"""``speechforge plugins``: what is loaded, from which package, with which components."""
from __future__ import annotations

import argparse
import json
from typing import Any

from speechforge.plugins import default_host


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("plugins", help="list loaded plugins and their components")
    parser.add_argument("--json", action="store_true", help="print a JSON list of objects")
    parser.set_defaults(run=run)


def describe() -> tuple[list[dict[str, Any]], list[str]]:
    host = default_host()
    loaded = [
        {"name": p.name, "package": p.package, "components": {k: sorted(v) for k, v in p.components.items()}}
        for p in host.loaded
    ]
    return loaded, [f.describe() for f in host.failed]


def run(args: argparse.Namespace) -> int:
    loaded, failed = describe()
    if args.json:
        print(json.dumps(loaded, indent=2))
    else:
        rows = [
            (p["name"], p["package"], kind, ", ".join(names))
            for p in loaded
            for kind, names in sorted(p["components"].items())
        ]
        widths = [max(len(r[i]) for r in rows + [("plugin", "package", "kind", "")]) for i in range(3)]
        print(f"{'plugin':{widths[0]}}  {'package':{widths[1]}}  {'kind':{widths[2]}}  components")
        for row in rows:
            print(f"{row[0]:{widths[0]}}  {row[1]:{widths[1]}}  {row[2]:{widths[2]}}  {row[3]}")
    for message in failed:
        print(f"warning: {message}")
    return 1 if failed else 0
