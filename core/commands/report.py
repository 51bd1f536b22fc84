"""``speechforge report --exp-dir EXP``: write ``EXP/report.md`` (see
:mod:`speechforge.metrics.report`)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from speechforge.builder import build_model
from speechforge.config import load_config, to_yaml
from speechforge.metrics.report import write_report
from speechforge.plugins import default_host

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("report", help="write EXP/report.md")
    parser.add_argument("--exp-dir", required=True, type=Path)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.exp_dir / "config.yaml")
    host = default_host()
    num_params = sum(p.numel() for p in build_model(config, host).parameters())
    sections = [s for answer in host.hook.report_sections(exp_dir=args.exp_dir, config=config) or [] for s in answer]
    path = write_report(args.exp_dir, to_yaml(config), num_params, sections)
    log.info("wrote %s", path)
    return 0
