"""``speechforge score --exp-dir EXP``: WER/CER of every decode directory, alignments, and
``EXP/results.json`` (one entry per set and method)."""
from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict
from pathlib import Path

from speechforge.config import atomic_write_text
from speechforge.data.data_dir import read_table
from speechforge.errors import DataError
from speechforge.metrics.wer import alignment_report, error_rates

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("score", help="score decoded hypotheses")
    parser.add_argument("--exp-dir", required=True, type=Path)
    parser.set_defaults(run=run)


def score_dir(decode_dir: Path) -> dict:
    refs = read_table(decode_dir / "ref", allow_empty_values=True)
    hyps = read_table(decode_dir / "hyp", allow_empty_values=True)
    missing = sorted(set(refs) - set(hyps))
    if missing:
        log.warning("%s: %d utterances have no hypothesis and count as deleted (first: %s)", decode_dir / "hyp", len(missing), ", ".join(missing[:3]))
    rates = error_rates(refs, hyps)
    atomic_write_text(decode_dir / "align.txt", alignment_report(refs, hyps))
    atomic_write_text(decode_dir / "wer.json", json.dumps(asdict(rates), indent=2))
    rtf = json.loads((decode_dir / "decode.json").read_text())["rtf"]
    return {"set": decode_dir.parent.name, "method": decode_dir.name, "wer": round(rates.wer, 2),
            "cer": round(rates.cer, 2), "num_utts": rates.num_utts, "rtf": round(rtf, 4)}


def run(args: argparse.Namespace) -> int:
    dirs = sorted(p.parent for p in args.exp_dir.glob("decode/*/*/hyp"))
    if not dirs:
        raise DataError(f"{args.exp_dir / 'decode'}: nothing decoded yet; run speechforge decode first")
    results = [score_dir(d) for d in dirs]
    atomic_write_text(args.exp_dir / "results.json", json.dumps(results, indent=2))
    for r in results:
        log.info("%s %s: WER %.2f%% CER %.2f%% (%d utts, RTF %.4f)", r["set"], r["method"], r["wer"], r["cer"], r["num_utts"], r["rtf"])
    return 0
