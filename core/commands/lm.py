"""``speechforge lm --config CONF --text DATA/text --exp-dir EXP``: train the config's token
n-gram language model (``lm: {order: N}``) on the training transcripts, tokenized by
``EXP/tokenizer``, into ``EXP/lm/lm.arpa`` for ``ctc_prefix_beam_search_lm``."""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

from speechforge.config import load_config, parse_section
from speechforge.data.data_dir import read_table
from speechforge.decode.recognizer import LM_FILE
from speechforge.lm.ngram_lm import NgramLM
from speechforge.text.tokenizer import load_tokenizer

log = logging.getLogger(__name__)


@dataclass
class LMOptions:
    order: int = 0  # n-gram order in tokens; 0: no language model


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("lm", help="train the n-gram language model for LM-fused decoding")
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--text", required=True, type=Path, help="Kaldi text file of the training set")
    parser.add_argument("--exp-dir", required=True, type=Path, help="holds the trained tokenizer")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    options = parse_section(LMOptions, load_config(args.config, args.overrides), "lm")
    if options.order == 0:
        log.info("lm.order is 0: no language model")
        return 0
    tokenizer = load_tokenizer(args.exp_dir / "tokenizer")
    texts = [t for t in read_table(args.text, allow_empty_values=True).values() if t.strip()]
    lm = NgramLM.train((tokenizer.encode(t) for t in texts), options.order, tokenizer.pieces, skip_ids=skipped_ids(tokenizer.vocab_size))
    lm.save_arpa(args.exp_dir / LM_FILE)
    log.info("%d-gram LM over %d sentences written to %s", options.order, len(texts), args.exp_dir / LM_FILE)
    return 0


def skipped_ids(vocab_size: int) -> tuple[int, int, int]:
    """Ids the LM never predicts: <blank> (0), <unk> (1), <sos/eos> (V - 1)."""
    return 0, 1, vocab_size - 1
