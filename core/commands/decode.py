"""``speechforge decode --exp-dir EXP --data DIR --method NAME [...]``: hypotheses in Kaldi
``text`` format under ``EXP/decode/<set>/<method>[@chunkN]/hyp``, with ``ref`` and the
real-time factor beside them.

Each batch is encoded once per chunk setting and every method searches that encoding (WeNet's
encode once, decode many); a method's real-time factor counts the shared encoding and its own
search. ``--option METHOD.key=value`` reaches that search's factory over ``decode.options``.
Hypotheses are appended to ``hyp.partial`` batch by batch, so a rerun after a crash decodes
only what is missing.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from speechforge.config import atomic_write_text
from speechforge.data.audio import load_audio
from speechforge.data.data_dir import Utterance, read_data_dir, write_table
from speechforge.data.duration_batch_sampler import DurationBatchSampler
from speechforge.data.speech_dataset import SkipCounter, Skipped
from speechforge.decode.partial_hypotheses import PartialHypotheses
from speechforge.decode.recognizer import Recognizer
from speechforge.decode.search_options import OPTION_FORMAT, check_override_methods, parse_option_overrides, search_options, takes
from speechforge.errors import DataError
from speechforge.interfaces import SearchMethod, check_chunk_size
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
    parser.add_argument("--beam-size", type=int, help="for every method that takes a beam_size (default: decode.beam_size)")
    add_option_argument(parser)
    parser.add_argument("--checkpoint", type=Path, help="default: EXP/model_avg.pt, else the newest checkpoint")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="audio seconds per batch")
    parser.set_defaults(run=run)


def add_option_argument(parser: argparse.ArgumentParser) -> None:
    """``--option METHOD.key=value`` (repeatable), read by :func:`parse_option_overrides`."""
    parser.add_argument(
        "--option", action="append", default=[], metavar="METHOD.KEY=VALUE",
        help=f"a search factory's key over decode.options.METHOD ({OPTION_FORMAT}); repeatable",
    )  # fmt: skip


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
    searches: Mapping[str, SearchMethod],
    chunk_size: int = -1,
    num_left_chunks: int = -1,
    max_seconds: float = 120.0,
    partial: Mapping[str, PartialHypotheses] | None = None,
    max_utterance_seconds: float = 0.0,
) -> dict[str, DecodeResult]:
    """Decode in duration-sorted batches, each encoded once and read by every search of
    ``searches`` (method name -> built search). Unreadable audio gets an empty hypothesis and
    is counted, so scoring still sees every reference. Returns one result per method.

    With ``partial`` (method -> its :class:`PartialHypotheses`), each batch's hypotheses are
    appended as soon as they exist, and utterances every method already has are not decoded
    again (a rerun after a crash continues). Utterances longer than ``max_utterance_seconds``
    (0: no limit) are refused like unreadable audio: an empty hypothesis, counted."""
    partial = partial or {}
    finished = set.intersection(*(set(p.done) for p in partial.values())) if len(partial) == len(searches) and partial else set()
    results = {method: DecodeResult({u: partial[method].done[u] for u in finished} if finished else {}, 0.0, 0.0, 0) for method in searches}
    utterances = [u for u in utterances if u.utt_id not in finished]
    skips = SkipCounter()
    if max_utterance_seconds:
        for u in [u for u in utterances if u.duration > max_utterance_seconds]:
            skips.add(Skipped(u.utt_id, f"{u.duration:.1f} s, longer than decode.max_utterance_seconds ({max_utterance_seconds:g} s)"))
            for result in results.values():
                result.hyps[u.utt_id] = ""
        utterances = [u for u in utterances if u.duration <= max_utterance_seconds]
    if finished:
        log.info("continuing a decode: %d utterances already decoded", len(finished))
    sampler = DurationBatchSampler([u.duration for u in utterances], max_seconds, shuffle=False)
    for indices in sampler:
        batch, waves = [], []
        for i in indices:
            try:
                waves.append(load_audio(utterances[i].audio, recognizer.sample_rate))
                batch.append(utterances[i])
            except DataError as error:
                skips.add(Skipped(utterances[i].utt_id, str(error)))
                for result in results.values():
                    result.hyps[utterances[i].utt_id] = ""
        if not batch:
            continue
        lens = torch.tensor([w.numel() for w in waves])
        speech = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)  # (B, S)
        started = time.perf_counter()
        encoder_out, encoder_lens = recognizer.encode(speech, lens, chunk_size, num_left_chunks)  # (B, T, D), (B,)
        encode_seconds = time.perf_counter() - started
        for method, search in searches.items():
            started = time.perf_counter()
            texts = recognizer.texts(search, encoder_out, encoder_lens)
            result = results[method]
            result.decode_seconds += encode_seconds + time.perf_counter() - started
            result.audio_seconds += float(lens.sum()) / recognizer.sample_rate
            result.hyps.update({u.utt_id: t for u, t in zip(batch, texts)})
            if method in partial:
                partial[method].append({u.utt_id: t for u, t in zip(batch, texts)})
    for result in results.values():
        result.skipped = skips.total()
    return results


def method_options(
    recognizer: Recognizer,
    method: str,
    defaults: DecodeOptions,
    beam_size: int | None = None,
    overrides: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """What ``method``'s factory gets in a command: the config's ``decode`` section
    (``defaults``), then the command line's ``--beam-size`` where the method takes one and its
    ``--option`` entries (``overrides``)."""
    given = {"beam_size": beam_size} if beam_size is not None and takes(recognizer.host.registry, method, "beam_size") else {}
    return search_options(recognizer.host.registry, defaults, method, {**given, **(overrides or {})})


def run(args: argparse.Namespace) -> int:
    recognizer = Recognizer(args.exp_dir, args.checkpoint)
    defaults = recognizer.decode_options
    methods = args.method or defaults.methods or [recognizer.default_method]  # the last fails naming the config
    chunk_sizes = args.chunk_size or defaults.chunk_sizes
    key = "--chunk-size" if args.chunk_size else "decode.chunk_sizes"
    for chunk_size in chunk_sizes:
        check_chunk_size(chunk_size, key)
    num_left_chunks = defaults.num_left_chunks if args.num_left_chunks is None else args.num_left_chunks
    overrides = parse_option_overrides(args.option)
    check_override_methods(overrides, methods)
    options = {m: method_options(recognizer, m, defaults, args.beam_size, overrides.get(m)) for m in methods}
    searches = {m: recognizer.search(m, **options[m]) for m in methods}
    for data_dir in args.data:
        utterances = read_data_dir(data_dir)
        refs = {u.utt_id: u.text for u in utterances}
        for chunk_size in chunk_sizes:
            resolved, _ = recognizer.model.encoder.resolve_chunk(chunk_size, num_left_chunks, 0)  # 0: its own chunk
            out_dirs = {m: args.exp_dir / "decode" / data_dir.name / method_label(m, resolved) for m in methods}
            partial = {m: PartialHypotheses(out_dirs[m] / "hyp.partial") for m in methods}
            results = decode_utterances(
                recognizer, utterances, searches, chunk_size, num_left_chunks, args.max_seconds, partial, defaults.max_utterance_seconds
            )
            for method, result in results.items():
                out_dir = out_dirs[method]
                write_table(out_dir / "hyp", result.hyps)
                partial[method].finish()
                write_table(out_dir / "ref", refs)
                atomic_write_text(
                    out_dir / "decode.json",
                    json.dumps({"rtf": result.rtf, "audio_seconds": result.audio_seconds, "threads": torch.get_num_threads(),
                                "skipped": result.skipped, "checkpoint": recognizer.checkpoint.name,
                                "options": options[method]}),
                )  # fmt: skip
                log.info("decoded %s with %s: %d utterances, RTF %.4f", data_dir.name, out_dir.name, len(result.hyps), result.rtf)
    return 0
