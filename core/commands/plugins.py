"""``speechforge plugins``: what is loaded, from which package, with which components.

Usage::

    speechforge plugins [--json]                  # table: plugin, package, kind, components
    speechforge plugins --check DISTRIBUTION...   # validate installed plugin packages
    speechforge plugins --show KIND NAME          # a component's keys and its code
    speechforge plugins new NAME [--kind K] [--dir D] [--component C]   # scaffold a package
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from speechforge.plugins import default_host


def add_parser(sub: argparse._SubParsersAction) -> None:
    from speechforge.scaffold import KINDS

    parser = sub.add_parser(
        "plugins", help="list, check or scaffold plugins", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--json", action="store_true", help="print a JSON list of objects")
    what.add_argument("--check", nargs="+", metavar="DISTRIBUTION", help="validate installed plugin packages")
    what.add_argument("--show", nargs=2, metavar=("KIND", "NAME"), help="a component's keys, defaults and code")
    parser.set_defaults(run=run)
    actions = parser.add_subparsers(dest="plugins_action", metavar="ACTION")
    new = actions.add_parser("new", help="write a new plugin package")
    new.add_argument("name", help="distribution name, e.g. my-ffn (import package my_ffn)")
    new.add_argument("--kind", default="ffn", choices=KINDS, help="kind of the component (default: ffn)")
    new.add_argument("--dir", type=Path, default=Path("."), help="where the package folder goes (default: .)")
    new.add_argument("--component", help="registered name of the component (default: the import package)")
    new.set_defaults(run=run_new)


def describe() -> tuple[list[dict[str, Any]], list[str]]:
    host = default_host()
    loaded = [
        {"name": p.name, "package": p.package, "components": {k: sorted(v) for k, v in p.components.items()}}
        for p in host.loaded
    ]
    return loaded, [f.describe() for f in host.failed]


def run(args: argparse.Namespace) -> int:
    if args.check:
        return run_check(args.check)
    if args.show:
        from speechforge.component_info import show_component

        print("\n".join(show_component(default_host(), *args.show)))
        return 0
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


def run_check(distributions: list[str]) -> int:
    from speechforge.plugin_check import check_distribution

    reports = [check_distribution(default_host(), name) for name in distributions]
    for report in reports:
        print("\n".join(report.lines))
    return 1 if any(report.problems for report in reports) else 0


def run_new(args: argparse.Namespace) -> int:
    from speechforge.scaffold import PluginNames, write_package

    names = PluginNames.from_distribution(args.name, args.component)
    written = write_package(names, args.kind, args.dir)
    root = args.dir / names.distribution
    print(f"wrote {root}: the {args.kind} {names.component!r} in {names.package}/{args.kind}.py ({len(written)} files)")
    print(f"next: pip install {root} && python -m pytest {root / 'tests'} && speechforge plugins --check {names.distribution}")
    return 0
