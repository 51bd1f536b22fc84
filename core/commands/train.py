"""``speechforge train --config CONF --exp-dir EXP [--resume] [key=value ...]``

Usage::

    speechforge train --config egs/librispeech/conf/ctc_conformer_small.yaml \\
        --exp-dir exp/ctc data.train=data/train-clean-100 data.valid=data/dev-clean
    # several processes (DDP; multi-node with torchrun's rendezvous flags):
    torchrun --nproc_per_node 2 -m speechforge.cli train --config ... --exp-dir ...

The tokenizer (``EXP/tokenizer``) and, when present, ``EXP/cmvn.json`` come from earlier
stages. ``--resume`` continues from ``EXP/checkpoints/latest`` exactly where it stopped; a
run that starts at step 0 loads ``train.init_from`` first, e.g.
``train.init_from.checkpoint=exp/ssl 'train.init_from.include=[encoder.*]'``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from speechforge.config import load_config
from speechforge.train.distributed import close_distributed
from speechforge.train.trainer import Trainer


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train a model", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--exp-dir", required=True, type=Path)
    parser.add_argument("--resume", action="store_true", help="continue from EXP/checkpoints/latest if it exists")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        _train(args)
    except BaseException:
        close_distributed(wait=False)
        raise
    close_distributed()  # the trainer is gone, so the process group can be freed
    return 0


def _train(args: argparse.Namespace) -> None:
    Trainer(load_config(args.config, args.overrides), args.exp_dir, resume=args.resume).train()
