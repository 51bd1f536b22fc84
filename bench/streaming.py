"""U2++ decoding speed at batch 1: real-time factor per method and chunk size, and per-chunk
latency of streaming (features + ``forward_chunk`` + CTC prefix beam step).

Usage::

    .venv/bin/python bench/streaming.py                     # small U2++ config, random weights
    .venv/bin/python bench/streaming.py --exp-dir egs/librispeech/exp/u2pp_conformer_small \\
        --data egs/librispeech/data/test-clean --num-utts 20    # a trained model on real audio

Without ``--exp-dir`` the model is ``conf/u2pp_conformer_small.yaml`` with random weights and
the audio is noise; the attention search then runs to its step limit on every utterance, so
its RTF is a worst case. With ``--exp-dir``, audio comes from ``--data`` (required).

RTF: each method decodes every utterance alone (encoder under the chunk mask, then the
search), total time / audio time, for full context and chunks 4, 8, 16. Streaming: the audio
is fed in pieces of one chunk's duration; the latency of a chunk is the compute time of the
call that completed it (median and p95 over all chunks of all utterances), and the final
rescoring latency is the time from the end of the audio to the attention-rescored result.
``torch.set_num_threads(2)`` unless ``--threads`` says otherwise (two threads of a
process that gets little CPU, under ``nice`` on a busy machine, mostly wait for each other). Ratios are against full-context ``ctc_prefix_beam_search``
measured in the same run.

Prints one JSON object.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import time
from pathlib import Path

import torch

from speechforge.builder import build_model
from speechforge.config import load_config
from speechforge.data.audio import load_audio
from speechforge.data.data_dir import read_data_dir
from speechforge.decode.recognizer import Recognizer
from speechforge.decode.streaming_decoder import StreamingDecoder
from speechforge.modules.inference_transform import optimize_for_cpu_inference
from speechforge.plugins import default_registry

REPO = Path(__file__).resolve().parents[1]
SMALL_CONFIG = REPO / "egs" / "librispeech" / "conf" / "u2pp_conformer_small.yaml"
METHODS = ("ctc_greedy_search", "ctc_prefix_beam_search", "attention", "attention_rescoring")
CHUNKS = (4, 8, 16)
THREADS = 2
BASELINE = ("ctc_prefix_beam_search", "full")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def random_model(vocab_size: int):
    config = load_config(SMALL_CONFIG)
    return optimize_for_cpu_inference(build_model({**config, "vocab_size": vocab_size}), inplace=True)


def build_search(method: str, beam_size: int):
    """The registered search, with ``beam_size`` when it takes one."""
    registry = default_registry()
    takes_beam = "beam_size" in inspect.signature(registry.get("search", method).factory).parameters
    return registry.build("search", {"type": method, **({"beam_size": beam_size} if takes_beam else {})}, "decode")


def method_rtf(model, waves: list[torch.Tensor], sample_rate: int, method: str, chunk: int, beam_size: int) -> float:
    search = build_search(method, beam_size)
    spent = 0.0
    for wave in waves:
        started = time.perf_counter()
        with torch.no_grad():
            out, lens = model.encode(wave.unsqueeze(0), torch.tensor([wave.numel()]), chunk, -1)
            search(model, out, lens)
        spent += time.perf_counter() - started
    return spent / (sum(w.numel() for w in waves) / sample_rate)


def streaming(model, waves: list[torch.Tensor], sample_rate: int, chunk: int, beam_size: int) -> dict[str, float]:
    rescoring = build_search("attention_rescoring", beam_size)
    streamed = build_search("ctc_prefix_beam_search", beam_size)
    piece = chunk * model.encoder.subsampling_rate * model.frontend.hop_length
    latencies, finals, spent = [], [], 0.0
    for wave in waves:
        stream = StreamingDecoder(model, streamed, chunk)
        for start in range(0, wave.numel(), piece):
            started = time.perf_counter()
            produced = stream.accept_waveform(wave[start : start + piece])
            took = time.perf_counter() - started
            spent += took
            if produced:
                latencies.append(1000 * took)
        started = time.perf_counter()
        encodings = stream.finish()
        with torch.no_grad():
            rescoring(model, encodings, torch.tensor([encodings.size(1)]))
        took = time.perf_counter() - started
        spent += took
        finals.append(1000 * took)
    audio = sum(w.numel() for w in waves) / sample_rate
    return {
        "chunk_ms": 1000 * piece / sample_rate,
        "chunk_latency_ms_median": statistics.median(latencies),
        "chunk_latency_ms_p95": percentile(latencies, 0.95),
        "final_rescoring_ms_median": statistics.median(finals),
        "rtf": spent / audio,
        "chunks": len(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp-dir", type=Path, help="a trained experiment (default: random weights)")
    parser.add_argument("--data", type=Path, help="data dir to take audio from (required with --exp-dir)")
    parser.add_argument("--num-utts", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=8.0, help="noise utterance length without --data")
    parser.add_argument("--beam-size", type=int, default=10)
    parser.add_argument("--threads", type=int, default=THREADS, help="torch threads (default 2)")
    args = parser.parse_args()
    if args.exp_dir and not args.data:
        parser.error("--exp-dir needs --data (real audio for a trained model)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.exp_dir:
        recognizer = Recognizer(args.exp_dir)
        model, sample_rate = recognizer.model, recognizer.sample_rate
    else:
        model = random_model(vocab_size=256)
        sample_rate = int(model.frontend.sample_rate)
    if args.data:
        waves = [load_audio(u.audio, sample_rate) for u in read_data_dir(args.data)[: args.num_utts]]
    else:
        waves = [0.1 * torch.randn(int(args.seconds * sample_rate)) for _ in range(args.num_utts)]
    load_before = os.getloadavg()[0]
    method_rtf(model, waves[:1], sample_rate, "ctc_greedy_search", -1, args.beam_size)  # warm-up
    rtf = {
        method: {("full" if chunk < 0 else f"chunk{chunk}"): method_rtf(model, waves, sample_rate, method, chunk, args.beam_size) for chunk in (-1, *CHUNKS)}
        for method in METHODS
    }
    baseline = rtf[BASELINE[0]][BASELINE[1]]
    stream = {f"chunk{chunk}": streaming(model, waves, sample_rate, chunk, args.beam_size) for chunk in CHUNKS}
    for entry in stream.values():
        entry["rtf_vs_full_ctc_prefix_beam"] = entry["rtf"] / baseline
    result = {
        "model": str(args.exp_dir) if args.exp_dir else f"{SMALL_CONFIG.name} (random weights)",
        "audio": str(args.data) if args.data else f"noise, {args.seconds:g} s each",
        "num_utts": len(waves),
        "audio_seconds": sum(w.numel() for w in waves) / sample_rate,
        "threads": args.threads,
        "beam_size": args.beam_size,
        "loadavg_1min": [load_before, os.getloadavg()[0]],
        "rtf": rtf,
        "rtf_vs_full_ctc_prefix_beam": {m: {k: v / baseline for k, v in per.items()} for m, per in rtf.items()},
        "streaming": stream,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
