"""``speechforge tokenizer --config CONF --text DATA/text --exp-dir EXP``: train the
config's tokenizer (``tokenizer: {type: bpe|char, vocab_size: N}``) into ``EXP/tokenizer``."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from speechforge.config import load_config, parse_section
from speechforge.data.data_dir import read_table
from speechforge.text.bpe_tokenizer import BPETokenizer
from speechforge.text.char_tokenizer import CharTokenizer
from speechforge.train.options import TokenizerOptions

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("tokenizer", help="train the tokenizer")
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--text", required=True, type=Path, help="Kaldi text file of the training set")
    parser.add_argument("--exp-dir", required=True, type=Path)
    parser.add_argument("overrides", nargs="*", help="dotted config overrides")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    options = parse_section(TokenizerOptions, load_config(args.config, args.overrides), "tokenizer")
    texts = list(read_table(args.text, allow_empty_values=True).values())
    if options.type == "bpe":
        tokenizer = BPETokenizer.train(texts, options.vocab_size)
    else:
        tokenizer = CharTokenizer.train(texts)
    tokenizer.save(args.exp_dir / "tokenizer")
    log.info("tokenizer %s with %d ids written to %s", options.type, tokenizer.vocab_size, args.exp_dir / "tokenizer")
    return 0
