"""``speechforge config show CONF [key=value ...] [--params]``: the resolved config, and the
parameter count of each module of the model it builds."""
from __future__ import annotations

import argparse

from torch import nn

from speechforge.builder import build_model
from speechforge.config import load_config, to_yaml
from speechforge.train.options import check_runtime_sections


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("config", help="inspect experiment configs")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="print the resolved config")
    show.add_argument("config", help="YAML config file")
    show.add_argument("overrides", nargs="*", help="dotted overrides, e.g. encoder.num_blocks=6")
    show.add_argument("--params", action="store_true", help="build the model and count parameters per module")
    show.add_argument("--depth", type=int, default=2, help="module depth of the --params table")
    show.set_defaults(run=run)


def parameter_table(model: nn.Module, depth: int) -> list[tuple[str, int]]:
    """(module path, parameter count) down to ``depth`` levels, the model total first."""
    rows = [("total", sum(p.numel() for p in model.parameters()))]
    for name, module in model.named_modules():
        if name and name.count(".") < depth:
            rows.append((name, sum(p.numel() for p in module.parameters())))
    return rows


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    check_runtime_sections(config)
    print(to_yaml(config), end="")
    if args.params:
        config.setdefault("vocab_size", (config.get("tokenizer") or {}).get("vocab_size", 0))
        model = build_model(config)
        rows = parameter_table(model, args.depth)
        width = max(len(name) for name, _ in rows)
        print("\n# parameters")
        for name, count in rows:
            print(f"{name:{width}}  {count:>12,}")
    return 0
