"""``speechforge stream --exp-dir EXP AUDIO [--chunk-size 16] [--num-left-chunks -1]``

Usage::

    speechforge stream --exp-dir egs/librispeech/exp/u2pp_conformer_small \\
        egs/librispeech/corpus/synthetic/LibriSpeech/test-clean/318/223990/318-223990-0000.flac --chunk-size 16

Feeds the audio to the model as a live stream would, one chunk of ``--chunk-size`` encoder
frames at a time (attention and convolution caches carry the past; ``--num-left-chunks``
bounds it), and prints the partial CTC prefix beam search result after each chunk with the
audio time and the compute time it took. At the end it prints the final result of a second
pass over all encodings: ``attention_rescoring`` when the model has a decoder, else the CTC
prefix beam search itself (``--final-method`` picks another registered search).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from speechforge.commands.decode import method_options
from speechforge.config import parse_section
from speechforge.data.audio import load_audio
from speechforge.decode.recognizer import Recognizer
from speechforge.decode.streaming_decoder import StreamingDecoder
from speechforge.train.options import DecodeOptions

STREAMED = "ctc_prefix_beam_search"


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "stream", help="decode one audio file chunk by chunk, printing partial results",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--exp-dir", required=True, type=Path)
    parser.add_argument("audio", type=Path, help="an audio file (resampled to the model's rate)")
    parser.add_argument("--chunk-size", type=int, default=16, help="encoder frames per chunk (> 0)")
    parser.add_argument("--num-left-chunks", type=int, default=-1, help="chunks of left context kept, -1 = all")
    parser.add_argument("--beam-size", type=int, help="prefix beam size (default: decode.beam_size)")
    parser.add_argument("--final-method", help="search for the final pass (default: attention_rescoring with a decoder)")
    parser.add_argument("--checkpoint", type=Path, help="default: EXP/model_avg.pt, else the newest checkpoint")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    recognizer = Recognizer(args.exp_dir, args.checkpoint)
    defaults = parse_section(DecodeOptions, recognizer.config, "decode")
    beam_size = args.beam_size or defaults.beam_size
    model = recognizer.model
    stream = StreamingDecoder(model, args.chunk_size, args.num_left_chunks, beam_size)
    wave = load_audio(args.audio, recognizer.sample_rate)
    hop = model.frontend.hop_length
    piece = args.chunk_size * model.encoder.subsampling_rate * hop  # samples of one chunk
    for start in range(0, wave.numel(), piece):
        started = time.perf_counter()
        if stream.accept_waveform(wave[start : start + piece]):
            spent_ms = 1000 * (time.perf_counter() - started)
            seconds = min(start + piece, wave.numel()) / recognizer.sample_rate
            print(f"partial {seconds:6.2f}s ({spent_ms:5.1f} ms): {recognizer.tokenizer.decode(stream.partial())}")
    encodings = stream.finish()
    method = args.final_method or ("attention_rescoring" if model.decoder is not None else STREAMED)
    if method == STREAMED:
        token_ids = stream.partial()
    else:
        search = recognizer.search(method, **method_options(recognizer, method, defaults, beam_size))
        with torch.no_grad():
            token_ids = search(model, encodings, torch.tensor([encodings.size(1)]))[0]
    print(f"final ({method}): {recognizer.tokenizer.decode(token_ids)}")
    return 0

