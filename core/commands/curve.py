"""``speechforge curve --exp-dir EXP --data DIR``: decode every epoch checkpoint and plot
WER against training time (``EXP/wer_curve.json``, ``EXP/wer_curve.png``), beside the
accuracies the losses logged for that epoch (e.g. the attention decoder's teacher-forced
token accuracy, ``train_attention_acc`` / ``valid_attention_acc``)."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from speechforge.commands.decode import add_option_argument, decode_utterances, method_options
from speechforge.config import atomic_write_text
from speechforge.data.data_dir import read_data_dir
from speechforge.decode.recognizer import Recognizer
from speechforge.decode.search_options import check_override_methods, parse_option_overrides
from speechforge.metrics.epoch_summary import SPLITS, accuracy_keys, epoch_summaries
from speechforge.metrics.report import plot_wer_curve, read_log
from speechforge.metrics.wer import error_rates

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("curve", help="WER of every epoch checkpoint against training time")
    parser.add_argument("--exp-dir", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--method", help="the search to score (default: the config's first decode.methods entry)")
    add_option_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    utterances = read_data_dir(args.data)
    refs = {u.utt_id: u.text for u in utterances}
    records = read_log(args.exp_dir)
    summaries = {row["epoch"]: row for row in epoch_summaries(records)}
    accuracies = accuracy_keys(records)
    overrides = parse_option_overrides(args.option)
    points, method = [], args.method
    for checkpoint in sorted(args.exp_dir.glob("checkpoints/epoch_*.pt"), key=lambda p: int(p.stem.split("_")[1])):
        epoch = int(checkpoint.stem.split("_")[1])
        recognizer = Recognizer(args.exp_dir, checkpoint)
        method = method or recognizer.default_method
        check_override_methods(overrides, [method])
        options = method_options(recognizer, method, recognizer.decode_options, overrides=overrides.get(method))
        search = recognizer.search(method, **options)
        rates = error_rates(refs, decode_utterances(recognizer, utterances, {method: search})[method].hyps)
        summary = summaries.get(epoch, {})
        point = {"epoch": epoch, "elapsed": summary.get("elapsed", 0.0), "wer": rates.wer, "cer": rates.cer}
        point.update({f"{split}_{key}": summary.get(f"{split}_{key}") for key in accuracies for split in SPLITS})
        points.append(point)
        log.info("epoch %d: %s WER %.2f%%", epoch, args.data.name, rates.wer)
    atomic_write_text(args.exp_dir / "wer_curve.json", json.dumps(points, indent=2))
    plot_wer_curve(points, args.exp_dir / "wer_curve.png", f"{args.exp_dir.name} on {args.data.name} ({method})", accuracies)
    return 0
