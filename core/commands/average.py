"""``speechforge average --exp-dir EXP --num N``: average the last N epoch checkpoints (or
the N with the lowest validation loss) into ``EXP/model_avg.pt``. Plugin entries of the
checkpoint (``checkpoint_save``) are taken from the newest chosen one."""
from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

from speechforge.decode.recognizer import AVERAGED
from speechforge.errors import CheckpointError, ConfigError
from speechforge.train.checkpoint import average_checkpoints, load_checkpoint, plugin_entries, save_checkpoint
from speechforge.train.run_log import read_train_log

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("average", help="average epoch checkpoints")
    parser.add_argument("--exp-dir", required=True, type=Path)
    parser.add_argument("--num", type=int, default=5, help="how many checkpoints")
    parser.add_argument("--by", choices=["last", "valid_loss"], default="last", help="which checkpoints")
    parser.set_defaults(run=run)


def valid_losses(exp_dir: Path) -> dict[int, float]:
    """Validation loss per finished epoch, from train_log.jsonl (a torn line skipped). A NaN
    loss (a diverged model, or no finite validation batch) counts as none: it would sort
    anywhere."""
    return {
        r["epoch"]: r["valid_loss"]
        for r in read_train_log(exp_dir)
        if isinstance(r.get("valid_loss"), (int, float)) and math.isfinite(r["valid_loss"]) and "epoch" in r
    }


def select(exp_dir: Path, num: int, by: str) -> list[Path]:
    epochs = sorted(exp_dir.glob("checkpoints/epoch_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
    if not epochs:
        raise CheckpointError(f"{exp_dir / 'checkpoints'}: no epoch_*.pt checkpoints to average")
    if by == "valid_loss":
        losses = valid_losses(exp_dir)
        epochs = sorted(epochs, key=lambda p: losses.get(int(p.stem.split("_")[1]), float("inf")))[:num]
        return sorted(epochs, key=lambda p: int(p.stem.split("_")[1]))
    return epochs[-num:]


def run(args: argparse.Namespace) -> int:
    if args.num < 1:
        raise ConfigError(f"--num: how many checkpoints to average, at least 1, got {args.num}")
    chosen = select(args.exp_dir, args.num, args.by)
    entries = plugin_entries(load_checkpoint(chosen[-1]))
    save_checkpoint({**entries, "model": average_checkpoints(chosen), "averaged": [p.name for p in chosen]}, args.exp_dir / AVERAGED)
    log.info("averaged %s into %s", ", ".join(p.name for p in chosen), args.exp_dir / AVERAGED)
    return 0
