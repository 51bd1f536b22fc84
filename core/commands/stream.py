"""``speechforge stream --exp-dir EXP AUDIO [--method NAME] [--final-method NAME] [--chunk-size 16]``

Usage::

    speechforge stream --exp-dir egs/librispeech/exp/u2pp_conformer_small \\
        egs/librispeech/corpus/synthetic/LibriSpeech/test-clean/318/223990/318-223990-0000.flac --chunk-size 16

Feeds the audio to the model as a live stream would, one chunk of ``--chunk-size`` encoder
frames at a time (each encoder block carries its own state: attention and convolution
caches, Mamba's scan state; ``--num-left-chunks`` bounds the attention history), runs a
streaming search over each chunk and prints its partial result with the audio time and the
compute time it took. ``--method`` is any search that can stream (default: the config's first
``decode.methods`` entry that can); one that cannot is refused, naming those that can. At the
end it prints the final result: a second pass over all encodings with ``--final-method``
(default when the model has a decoder: ``attention_rescoring``, or ``attention_rescoring_lm``
after ``ctc_prefix_beam_search_lm``, so the LM-fused n-best is what is rescored), else the
streaming search's own final result. ``--chunk-size 0`` is the encoder's own static chunk. Search keys come from
``decode.options`` and ``--option METHOD.key=value``, as in ``speechforge decode``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from speechforge.commands.decode import add_option_argument, method_options
from speechforge.data.audio import load_audio
from speechforge.decode.recognizer import Recognizer
from speechforge.decode.streaming_decoder import StreamingDecoder, can_stream, check_streaming_method, streaming_methods
from speechforge.errors import ConfigError
from speechforge.decode.search_options import check_override_methods, parse_option_overrides


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "stream", help="decode one audio file chunk by chunk, printing partial results",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--exp-dir", required=True, type=Path)
    parser.add_argument("audio", type=Path, help="an audio file (resampled to the model's rate)")
    parser.add_argument("--chunk-size", type=int, default=16, help="encoder frames per chunk (> 0; 0 = the encoder's static chunk)")
    parser.add_argument("--num-left-chunks", type=int, default=-1, help="chunks of left context kept, -1 = all")
    parser.add_argument("--method", help="a search that streams (default: the first of decode.methods that does)")
    parser.add_argument("--beam-size", type=int, help="for every method that takes a beam_size (default: decode.beam_size)")
    add_option_argument(parser)
    parser.add_argument(
        "--final-method",
        help="search for the final pass (default with a decoder: attention_rescoring, or attention_rescoring_lm after ctc_prefix_beam_search_lm)",
    )
    parser.add_argument("--checkpoint", type=Path, help="default: EXP/model_avg.pt, else the newest checkpoint")
    parser.set_defaults(run=run)


def default_method(recognizer: Recognizer, methods: list[str]) -> str:
    """The first of ``decode.methods`` that can stream."""
    registry = recognizer.host.registry
    for method in methods:
        if can_stream(registry.get("search", method)):
            return method
    raise ConfigError(
        f"decode.methods: none of {', '.join(methods) or '(none)'} can stream; pass --method with one of "
        f"{', '.join(streaming_methods(registry)) or '(none)'}"
    )


#: the default second pass after a streaming search whose own n-best it should rescore
LM_RESCORING = {"ctc_prefix_beam_search_lm": "attention_rescoring_lm"}


def rescores(model) -> bool:
    """Whether the model has what ``attention_rescoring`` needs: a CTC head and a decoder."""
    return model.ctc is not None and bool(model.named_decoders())


def run(args: argparse.Namespace) -> int:
    recognizer = Recognizer(args.exp_dir, args.checkpoint)
    defaults = recognizer.decode_options
    model = recognizer.model
    if args.method is None:
        method = default_method(recognizer, defaults.methods)
    else:
        method = check_streaming_method(recognizer.host.registry, args.method)
    final_method = args.final_method or (LM_RESCORING.get(method, "attention_rescoring") if rescores(model) else method)
    overrides = parse_option_overrides(args.option)
    check_override_methods(overrides, [method, final_method])
    search = recognizer.search(method, **method_options(recognizer, method, defaults, args.beam_size, overrides.get(method)))
    stream = StreamingDecoder(model, search, args.chunk_size, args.num_left_chunks)
    wave = load_audio(args.audio, recognizer.sample_rate, resample=True)
    piece = stream.window.stride * model.frontend.hop_length  # samples of one chunk
    for start in range(0, wave.numel(), piece):
        started = time.perf_counter()
        if stream.accept_waveform(wave[start : start + piece]):
            spent_ms = 1000 * (time.perf_counter() - started)
            seconds = min(start + piece, wave.numel()) / recognizer.sample_rate
            print(f"partial {seconds:6.2f}s ({spent_ms:5.1f} ms): {recognizer.tokenizer.decode(stream.partial())}")
    encodings = stream.finish()
    if final_method == method:
        token_ids = stream.final()
    else:
        options = method_options(recognizer, final_method, defaults, args.beam_size, overrides.get(final_method))
        final = recognizer.search(final_method, **options)
        with torch.no_grad():
            token_ids = final(model, encodings, torch.tensor([encodings.size(1)]))[0]
    print(f"final ({final_method}): {recognizer.tokenizer.decode(token_ids)}")
    return 0
