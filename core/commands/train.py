"""``speechforge train --config CONF --exp-dir EXP [--resume] [key=value ...]``

Usage::

    speechforge train --config egs/librispeech/conf/ctc_conformer_small.yaml \\
        --exp-dir exp/ctc data.train=data/train-clean-100 data.valid=data/dev-clean
    # several processes (DDP; multi-node with torchrun's rendezvous flags):
    torchrun --nproc_per_node 2 -m speechforge.cli train --config ... --exp-dir ...

The tokenizer (``EXP/tokenizer``) and, when present, ``EXP/cmvn.json`` come from earlier
stages. An EXP that already holds a run (checkpoints or ``train_log.jsonl``) is refused unless
``--resume`` continues it or ``--overwrite`` replaces it (its checkpoints and log are removed).
``--resume`` continues from ``EXP/checkpoints/latest`` exactly where it stopped; a
run that starts at step 0 loads ``train.init_from`` first, e.g.
``train.init_from.checkpoint=exp/ssl 'train.init_from.include=[encoder.*]'``.
With several processes (torchrun, or any launcher setting ``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR`` and ``MASTER_PORT``), a rank that dies, hangs past ``train.ddp_timeout_s`` or
fails ends the others with an error naming it.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from speechforge.config import load_config
from speechforge.errors import ConfigError
from speechforge.train.distributed import close_distributed, explain_rank_failure
from speechforge.train.trainer import Trainer


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train a model", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--exp-dir", required=True, type=Path)
    parser.add_argument("--resume", action="store_true", help="continue from EXP/checkpoints/latest if it exists")
    parser.add_argument(
        "--overwrite", action="store_true", help="start afresh in an EXP that holds a run, removing its checkpoints and train_log.jsonl"
    )
    parser.add_argument("overrides", nargs="*", help="dotted config overrides")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        _train(args)
        close_distributed()  # the trainer is gone, so the process group can be freed
    except BaseException as error:
        failure = explain_rank_failure(error)  # under DDP: which rank ended the run
        close_distributed(wait=False)
        if failure is not None:
            raise failure from error
        raise
    return 0


def previous_run(exp_dir: Path) -> Path | None:
    """What shows that ``exp_dir`` holds a run (its checkpoints or its log), or None."""
    for marker in (exp_dir / "checkpoints" / "latest", exp_dir / "train_log.jsonl"):
        if marker.is_file():
            return marker
    return None


def _train(args: argparse.Namespace) -> None:
    if args.resume and args.overwrite:
        raise ConfigError("--resume and --overwrite: give one (continue the run, or replace it)")
    marker = previous_run(args.exp_dir)
    if marker is not None and not args.resume:
        if not args.overwrite:
            raise ConfigError(f"{args.exp_dir}: holds a run ({marker} exists); continue it with --resume or replace it with --overwrite")
        shutil.rmtree(args.exp_dir / "checkpoints", ignore_errors=True)
        shutil.rmtree(args.exp_dir / "tensorboard", ignore_errors=True)
        (args.exp_dir / "train_log.jsonl").unlink(missing_ok=True)
    Trainer(load_config(args.config, args.overrides), args.exp_dir, resume=args.resume).train()
