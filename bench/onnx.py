"""ONNX export speed: onnxruntime (fp32 and int8) against PyTorch on the same CTC model.

Usage::

    .venv/bin/python bench/onnx.py            # 12-block model, 10 s utterance, about 2 minutes
    .venv/bin/python bench/onnx.py --quick    # 4 blocks, fewer repeats

The model is the recipe's 12-block, 256-dim, 4-head, 2048-FFN, kernel-15 Conformer CTC
(vocabulary 500, Kaldi-compatible features, random weights), exported with
:func:`speechforge.deploy.wenet_ctc_export.export_wenet_ctc` (``int8=True``). PyTorch runs the
Recognizer's CPU inference form (:func:`~speechforge.modules.inference_transform.optimize_for_cpu_inference`),
onnxruntime the exported ``model.onnx`` and ``model.int8.onnx``; all at batch 1 on
``--threads`` threads (default 2), from features to CTC log-probabilities, timed alternately
after warm-up, each figure the median. The fp32 graph must agree with PyTorch within 1e-4
before anything is timed.

Ends with one compact JSON line; ``ort_speedup_b1`` is PyTorch time / onnxruntime fp32 time,
``ort_int8_speedup_b1`` PyTorch time / onnxruntime int8 time (above 1: onnxruntime is faster).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# This file is named onnx.py and Python puts its folder first on the import path, where
# `import onnx` (in the exporter) would find this script instead of the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import onnxruntime  # noqa: E402
import torch  # noqa: E402

from speechforge.builder import build_model  # noqa: E402
from speechforge.deploy.wenet_ctc_export import export_wenet_ctc  # noqa: E402
from speechforge.modules.inference_transform import optimize_for_cpu_inference  # noqa: E402

FRAMES = 1000  # 10 s at a 10 ms frame shift
VOCAB = 500
TOLERANCE = 1e-4


def model_config(blocks: int) -> dict:
    return {
        "vocab_size": VOCAB,
        "frontend": {"type": "fbank", "num_mel_bins": 80, "kaldi_compatible": True},
        "encoder": {
            "type": "conformer", "d_model": 256, "heads": 4, "num_blocks": blocks,
            "ffn": {"type": "dense", "hidden": 2048, "activation": "swish"},
            "encoder_block": {"type": "conformer", "conv_kernel": 15},
        },
        "losses": [{"type": "ctc"}],
    }  # fmt: skip


def median_times(runs: dict[str, Callable[[], object]], repeats: int, warmup: int) -> dict[str, float]:
    """Seconds per call of each run, taken alternately (A B C A B C ...), medians."""
    for _ in range(warmup):
        for run in runs.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 blocks, fewer repeats")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    blocks, repeats, warmup = (4, 5, 2) if args.quick else (12, 10, 3)
    model = build_model(model_config(blocks)).eval()
    pieces = ["<blank>", "<unk>", *(f"p{i}" for i in range(VOCAB - 3)), "<sos/eos>"]
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    # no busy-waiting worker threads between runs: they would take the cores PyTorch is timed on
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    with tempfile.TemporaryDirectory() as tmp:
        export_wenet_ctc(model, pieces, Path(tmp), int8=True)
        fp32 = onnxruntime.InferenceSession(f"{tmp}/model.onnx", options, providers=["CPUExecutionProvider"])
        int8 = onnxruntime.InferenceSession(f"{tmp}/model.int8.onnx", options, providers=["CPUExecutionProvider"])
    ours = optimize_for_cpu_inference(model)
    feats = torch.randn(1, FRAMES, 80)
    lens = torch.tensor([FRAMES])
    inputs = {"feats": feats.numpy(), "feats_length": lens.numpy()}

    @torch.inference_mode()
    def pytorch() -> torch.Tensor:
        x = (feats - ours.frontend.cmvn_mean) * ours.frontend.cmvn_istd
        return ours.ctc(ours.encoder(x, lens, -1)[0])

    want = pytorch()
    diff = (torch.from_numpy(fp32.run(None, inputs)[0]) - want).abs().max().item()
    if diff > TOLERANCE:
        raise SystemExit(f"onnxruntime and PyTorch differ by {diff:.3g} > {TOLERANCE}")
    int8_diff = (torch.from_numpy(int8.run(None, inputs)[0]) - want).abs().max().item()
    times = median_times(
        {"pytorch": pytorch, "ort_fp32": lambda: fp32.run(None, inputs), "ort_int8": lambda: int8.run(None, inputs)},
        repeats,
        warmup,
    )
    result = {
        "bench": "onnx",
        "blocks": blocks,
        "frames": FRAMES,
        "threads": args.threads,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "machine": platform.machine(),
        "pytorch_s": round(times["pytorch"], 4),
        "ort_fp32_s": round(times["ort_fp32"], 4),
        "ort_int8_s": round(times["ort_int8"], 4),
        "max_abs_diff_fp32": diff,
        "max_abs_diff_int8": round(int8_diff, 4),
        "ort_speedup_b1": round(times["pytorch"] / times["ort_fp32"], 3),
        "ort_int8_speedup_b1": round(times["pytorch"] / times["ort_int8"], 3),
    }
    print(json.dumps(result, separators=(",", ":")))


if __name__ == "__main__":
    main()
