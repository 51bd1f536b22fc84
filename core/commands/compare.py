"""``speechforge compare EXP_DIR...``: one table of every experiment's results."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from speechforge.errors import DataError


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("compare", help="compare the results of experiments")
    parser.add_argument("exp_dirs", nargs="+", type=Path)
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    parser.set_defaults(run=run)


def collect(exp_dirs: list[Path]) -> list[dict]:
    rows = []
    for exp in exp_dirs:
        path = exp / "results.json"
        if not path.is_file():
            raise DataError(f"{path}: missing; run speechforge score --exp-dir {exp}")
        rows += [{"exp": exp.name, **r} for r in json.loads(path.read_text())]
    return rows


def run(args: argparse.Namespace) -> int:
    rows = collect(args.exp_dirs)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = ("exp", "set", "method", "WER %", "CER %", "utts", "RTF")
    table = [(r["exp"], r["set"], r["method"], f"{r['wer']:.2f}", f"{r['cer']:.2f}", str(r["num_utts"]), f"{r['rtf']:.4f}") for r in rows]
    widths = [max(len(str(row[i])) for row in [header, *table]) for i in range(len(header))]
    for row in [header, *table]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0
