"""``speechforge tokenizer --config CONF --text DATA/text --exp-dir EXP``: train the
config's tokenizer (``tokenizer: {type: bpe|char, vocab_size: N}``) into ``EXP/tokenizer``."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from speechforge.config import load_config, section
from speechforge.data.data_dir import read_table
from speechforge.errors import ConfigError
from speechforge.text.bpe_tokenizer import BPETokenizer
from speechforge.text.char_tokenizer import CharTokenizer

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("tokenizer", help="train the tokenizer")
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--text", required=True, type=Path, help="Kaldi text file of the training set")
    parser.add_argument("--exp-dir", required=True, type=Path)
    parser.add_argument("overrides", nargs="*", help="dotted config overrides")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    options = section(load_config(args.config, args.overrides), "tokenizer")
    kind = options.pop("type", "bpe")
    texts = list(read_table(args.text, allow_empty_values=True).values())
    if kind == "bpe":
        tokenizer = BPETokenizer.train(texts, int(options.pop("vocab_size", 256)))
    elif kind == "char":
        tokenizer = CharTokenizer.train(texts)
    else:
        raise ConfigError(f"tokenizer.type: bpe or char, got {kind!r}")
    if options:
        raise ConfigError(f"tokenizer.{next(iter(options))}: unknown key for tokenizer {kind!r}")
    tokenizer.save(args.exp_dir / "tokenizer")
    log.info("tokenizer %s with %d ids written to %s", kind, tokenizer.vocab_size, args.exp_dir / "tokenizer")
    return 0
