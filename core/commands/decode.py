"""``speechforge decode --exp-dir EXP --data DIR --method NAME [...]``: hypotheses in Kaldi
``text`` format under ``EXP/decode/<set>/<method>[@chunkN]/hyp``, with ``ref`` and the
real-time factor beside them."""
from __future__ import annotations

import argparse
import inspect
import itertools
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from speechforge.config import atomic_write_text, parse_section
from speechforge.data.audio import load_audio
from speechforge.data.data_dir import Utterance, read_data_dir, write_table
from speechforge.data.duration_batch_sampler import DurationBatchSampler
from speechforge.data.speech_dataset import SkipCounter, Skipped
from speechforge.decode.recognizer import Recognizer
from speechforge.errors import DataError
from speechforge.interfaces import check_chunk_size
from speechforge.train.options import DecodeOptions

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("decode", help="decode data dirs with registered search methods")
    parser.add_argument("--exp-dir", required=True, type=Path)
    parser.add_argument("--data", required=True, nargs="+", type=Path, help="data dirs; the set name is the dir name")
    parser.add_argument("--method", nargs="+", help="search names (default: the config's decode.methods)")
    parser.add_argument(
        "--chunk-size", type=int, nargs="+",
        help="attention chunks in encoder frames: -1 full context, 0 the encoder's own, N chunks of N (default: decode.chunk_sizes or -1)",
    )
    parser.add_argument("--num-left-chunks", type=int, help="default: decode.num_left_chunks or -1 (all)")
    parser.add_argument("--beam-size", type=int, help="for beam searches (default: decode.beam_size or the method's own)")
    parser.add_argument("--checkpoint", type=Path, help="default: EXP/model_avg.pt, else the newest checkpoint")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="audio seconds per batch")
    parser.set_defaults(run=run)


def method_label(method: str, chunk_size: int) -> str:
    """The output dir of a method at a resolved chunk size (-1 or N > 0)."""
    return f"{method}@chunk{chunk_size}" if chunk_size > 0 else method


@dataclass
class DecodeResult:
    hyps: dict[str, str]
    audio_seconds: float
    decode_seconds: float
    skipped: int

    @property
    def rtf(self) -> float:
        return self.decode_seconds / max(self.audio_seconds, 1e-9)


def decode_utterances(
    recognizer: Recognizer,
    utterances: Sequence[Utterance],
    method: str,
    chunk_size: int = -1,
    num_left_chunks: int = -1,
    options: Mapping[str, object] | None = None,
    max_seconds: float = 120.0,
) -> DecodeResult:
    """Decode in duration-sorted batches; unreadable audio gets an empty hypothesis and is
    counted, so scoring still sees every reference."""
    sampler = DurationBatchSampler([u.duration for u in utterances], max_seconds, shuffle=False)
    result = DecodeResult({}, 0.0, 0.0, 0)
    skips = SkipCounter()
    for indices in sampler:
        batch, waves = [], []
        for i in indices:
            try:
                waves.append(load_audio(utterances[i].audio, recognizer.sample_rate))
                batch.append(utterances[i])
            except DataError as error:
                skips.add(Skipped(utterances[i].utt_id, str(error)))
                result.hyps[utterances[i].utt_id] = ""
        if not batch:
            continue
        lens = torch.tensor([w.numel() for w in waves])
        speech = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
        started = time.perf_counter()
        texts = recognizer.decode_batch(speech, lens, method, chunk_size, num_left_chunks, **(options or {}))
        result.decode_seconds += time.perf_counter() - started
        result.audio_seconds += float(lens.sum()) / recognizer.sample_rate
        result.hyps.update({u.utt_id: t for u, t in zip(batch, texts)})
    result.skipped = skips.total()
    return result


def method_options(recognizer: Recognizer, method: str, defaults: DecodeOptions, beam_size: int) -> dict[str, object]:
    """The decode options (``beam_size``, ``lm_weight``, ``lm_bonus``, ``ctc_weight``,
    ``reverse_weight``) that ``method`` takes; unset ones leave the method's default."""
    factory = recognizer.host.registry.get("search", method).factory
    parameters = inspect.signature(factory).parameters
    offered = {
        "beam_size": beam_size,
        "lm_weight": defaults.lm_weight,
        "lm_bonus": defaults.lm_bonus,
        "ctc_weight": defaults.ctc_weight,
        "reverse_weight": defaults.reverse_weight,
    }
    return {name: value for name, value in offered.items() if name in parameters and value is not None}


def run(args: argparse.Namespace) -> int:
    recognizer = Recognizer(args.exp_dir, args.checkpoint)
    defaults = parse_section(DecodeOptions, recognizer.config, "decode")
    methods = args.method or defaults.methods
    chunk_sizes = args.chunk_size or defaults.chunk_sizes
    key = "--chunk-size" if args.chunk_size else "decode.chunk_sizes"
    for chunk_size in chunk_sizes:
        check_chunk_size(chunk_size, key)
    num_left_chunks = defaults.num_left_chunks if args.num_left_chunks is None else args.num_left_chunks
    beam_size = args.beam_size or defaults.beam_size
    for data_dir in args.data:
        utterances = read_data_dir(data_dir)
        for method, chunk_size in itertools.product(methods, chunk_sizes):
            options = method_options(recognizer, method, defaults, beam_size)
            result = decode_utterances(recognizer, utterances, method, chunk_size, num_left_chunks, options, args.max_seconds)
            resolved, _ = recognizer.model.encoder.resolve_chunk(chunk_size, num_left_chunks, 0)  # 0: its own chunk
            out_dir = args.exp_dir / "decode" / data_dir.name / method_label(method, resolved)
            write_table(out_dir / "hyp", result.hyps)
            write_table(out_dir / "ref", {u.utt_id: u.text for u in utterances})
            atomic_write_text(
                out_dir / "decode.json",
                json.dumps({"rtf": result.rtf, "audio_seconds": result.audio_seconds, "threads": torch.get_num_threads(),
                            "skipped": result.skipped, "checkpoint": recognizer.checkpoint.name}),
            )
            log.info("decoded %s with %s: %d utterances, RTF %.4f", data_dir.name, out_dir.name, len(result.hyps), result.rtf)
    return 0
