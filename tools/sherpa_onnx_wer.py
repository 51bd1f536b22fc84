#!/usr/bin/env python
"""Decode a data directory with an exported model in sherpa-onnx and with speechforge itself,
and print both WERs: the check that an export deploys (docs/deployment.md).

    tools/sherpa_onnx_wer.py --exp-dir exp/ctc_conformer_small --data data/test-clean
    tools/sherpa_onnx_wer.py --exp-dir exp/u2pp_conformer_small --data data/test-clean \\
        --online --chunk-size 16 --num-left-chunks 4

Offline, sherpa-onnx's ``OfflineRecognizer`` decodes ``EXP/export`` (``from_wenet_ctc``, or
``from_transducer`` for a transducer's encoder / decoder / joiner files) and speechforge's
greedy search decodes the same utterances from the experiment's checkpoint (a transducer's at
one token per frame, as sherpa-onnx's greedy search emits).
``--online`` runs ``OnlineRecognizer.from_wenet_ctc`` on ``model-streaming.onnx`` against
speechforge's :class:`StreamingDecoder` (what ``speechforge stream`` runs) at the same chunk
size and left context. sherpa-onnx decodes whole chunks only, so both sides get the tail
padding of silence that sherpa-onnx's own examples append (``--tail-padding`` seconds) before
the input ends. Writes ``hyp.sherpa_onnx`` and ``hyp.speechforge`` under ``--out`` and ends
with one JSON line: both WERs, their difference, the number of utterances that differ.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from speechforge.data.audio import load_audio
from speechforge.data.data_dir import read_data_dir, write_table
from speechforge.decode.recognizer import Recognizer
from speechforge.decode.streaming_decoder import StreamingDecoder
from speechforge.metrics.wer import error_rates

SAMPLE_RATE = 16000
CTC_GREEDY = "ctc_greedy_search"
TRANSDUCER_GREEDY = "transducer_greedy_search"


def is_transducer(export: Path) -> bool:
    return (export / "encoder.onnx").exists()


def words(text: str) -> str:
    return " ".join(text.split())


def sherpa_recognizer(export: Path, args: argparse.Namespace):
    """sherpa-onnx's recognizer for the export directory."""
    import sherpa_onnx

    suffix = ".int8.onnx" if args.int8 else ".onnx"
    common = {"tokens": str(export / "tokens.txt"), "num_threads": args.threads, "sample_rate": SAMPLE_RATE,
              "feature_dim": args.feature_dim, "decoding_method": "greedy_search"}  # fmt: skip
    if is_transducer(export):
        if args.online:
            raise SystemExit("--online: the transducer export is offline only")
        graphs = {name: str(export / f"{name}{suffix}") for name in ("encoder", "decoder", "joiner")}
        return sherpa_onnx.OfflineRecognizer.from_transducer(**graphs, **common)
    if args.online:
        return sherpa_onnx.OnlineRecognizer.from_wenet_ctc(
            model=str(export / f"model-streaming{suffix}"), chunk_size=args.chunk_size,
            num_left_chunks=args.num_left_chunks, **common,
        )  # fmt: skip
    return sherpa_onnx.OfflineRecognizer.from_wenet_ctc(model=str(export / f"model{suffix}"), **common)


def sherpa_text(recognizer, wave: np.ndarray, online: bool) -> str:
    stream = recognizer.create_stream()
    stream.accept_waveform(SAMPLE_RATE, wave)
    if not online:
        recognizer.decode_stream(stream)
        return stream.result.text
    stream.input_finished()
    while recognizer.is_ready(stream):
        recognizer.decode_stream(stream)
    return recognizer.get_result(stream)


def speechforge_text(recognizer: Recognizer, wave: torch.Tensor, args: argparse.Namespace) -> str:
    if args.transducer:
        return recognizer.transcribe(wave, TRANSDUCER_GREEDY, max_symbols=1)
    if not args.online:
        return recognizer.transcribe(wave, CTC_GREEDY)
    decoder = StreamingDecoder(recognizer.model, recognizer.search(CTC_GREEDY), args.chunk_size, args.num_left_chunks)
    decoder.accept_waveform(wave)
    decoder.finish()
    return recognizer.tokenizer.decode(decoder.final())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exp-dir", required=True, type=Path, help="an experiment exported with speechforge export --format onnx")
    parser.add_argument("--data", required=True, type=Path, help="a data directory with wav.scp and text")
    parser.add_argument("--online", action="store_true", help="the streaming graph in sherpa-onnx's OnlineRecognizer")
    parser.add_argument("--chunk-size", type=int, default=16)
    parser.add_argument("--num-left-chunks", type=int, default=4)
    parser.add_argument("--tail-padding", type=float, default=0.66, help="seconds of silence after each utterance (online)")
    parser.add_argument("--int8", action="store_true", help="the int8 copies of the graphs")
    parser.add_argument("--feature-dim", type=int, default=80)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="default: EXP/sherpa_onnx/<data name>[_online]")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    args.transducer = is_transducer(args.exp_dir / "export")
    out = args.out or args.exp_dir / "sherpa_onnx" / (args.data.name + ("_online" if args.online else ""))
    ours = Recognizer(args.exp_dir)
    theirs = sherpa_recognizer(args.exp_dir / "export", args)
    refs, ours_hyps, theirs_hyps = {}, {}, {}
    for utt in read_data_dir(args.data):
        wave = load_audio(utt.audio, SAMPLE_RATE)
        if args.online:
            wave = torch.cat((wave, torch.zeros(int(args.tail_padding * SAMPLE_RATE))))
        refs[utt.utt_id] = utt.text
        ours_hyps[utt.utt_id] = words(speechforge_text(ours, wave, args))
        theirs_hyps[utt.utt_id] = words(sherpa_text(theirs, wave.numpy().astype(np.float32), args.online))
    out.mkdir(parents=True, exist_ok=True)
    write_table(out / "hyp.speechforge", ours_hyps)
    write_table(out / "hyp.sherpa_onnx", theirs_hyps)
    ours_wer, theirs_wer = error_rates(refs, ours_hyps).wer, error_rates(refs, theirs_hyps).wer
    differ = sum(ours_hyps[k] != theirs_hyps[k] for k in refs)
    mode = f"online, chunk {args.chunk_size}, {args.num_left_chunks} left chunks" if args.online else "offline"
    print(f"{args.data}: {len(refs)} utterances, {mode}{', int8' if args.int8 else ''}")
    print(f"  speechforge {TRANSDUCER_GREEDY if args.transducer else CTC_GREEDY}: WER {ours_wer:.2f}")
    print(f"  sherpa-onnx greedy_search: WER {theirs_wer:.2f}  ({differ} utterances differ; hyps in {out})")
    result = {"utterances": len(refs), "transducer": args.transducer, "online": args.online, "int8": args.int8, "speechforge_wer": round(ours_wer, 2),
              "sherpa_onnx_wer": round(theirs_wer, 2), "wer_diff": round(theirs_wer - ours_wer, 2), "utterances_differ": differ}  # fmt: skip
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
