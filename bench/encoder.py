"""Conformer encoder speed and memory: speechforge against ESPnet on the same model, same process.

Usage (ESPnet lives in its own environment, made by ``make bench-peers``)::

    .venv-peers/bin/python bench/encoder.py            # full run, about 10 minutes on 2 cores
    .venv-peers/bin/python bench/encoder.py --quick    # fewer repeats, no torch.compile
    .venv/bin/python bench/encoder.py --quick          # speechforge alone (no espnet there)

Both encoders are the 12-block, 256-dim, 4-head, 2048-FFN, kernel-15 Conformer with Conv2d 4x
subsampling and relative positions; ESPnet's weights are copied into ours with
:func:`speechforge.convert.convert_espnet_conformer` and the outputs must agree within 1e-4
before anything is timed. Our inference runs on :func:`~speechforge.modules.inference_transform.optimize_for_cpu_inference`'s
copy of the model, training on the model itself. Timings are fp32 eager, ``torch.set_num_threads(2)`` (``--threads``), taken
alternately (A B A B ...) after warm-up; each figure is the median. A training step is encoder
+ CTC head + CTC loss, forward and backward. Peak memory is the peak RSS growth of one step,
each measured in a fresh subprocess. Our bf16 (autocast) and ``torch.compile`` figures are
reported apart and never enter the ratios.

Prints one JSON object; the ratios are ESPnet / speechforge (above 1: we are faster/leaner).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechforge.convert import convert_espnet_conformer
from speechforge.interfaces import LossInputs
from speechforge.modules.inference_transform import optimize_for_cpu_inference
from speechforge.modules.ctc_head import CTCHead
from speechforge.plugins import default_host

from proc_status import status_mb  # bench/proc_status.py, beside this script

INPUT_DIM = 80
FRAMES = 1000  # 10 s at a 10 ms frame shift
VOCAB = 500
TARGET_LEN = 60
DEFAULT_THREADS = 2
TOLERANCE = 1e-4

OUR_CONFIG = {
    "type": "conformer",
    "d_model": 256,
    "heads": 4,
    "num_blocks": 12,
    "subsampling": 4,
    "ffn": {"type": "dense", "hidden": 2048, "activation": "swish"},
    "encoder_block": {"type": "conformer", "conv_kernel": 15},
}
ESPNET_CONFIG = {
    "output_size": 256,
    "attention_heads": 4,
    "linear_units": 2048,
    "num_blocks": 12,
    "input_layer": "conv2d",
    "normalize_before": True,
    "macaron_style": True,
    "rel_pos_type": "latest",
    "pos_enc_layer_type": "rel_pos",
    "selfattention_layer_type": "rel_selfattn",
    "activation_type": "swish",
    "use_cnn_module": True,
    "cnn_module_kernel": 15,
}


def load_espnet_encoder_class() -> type[nn.Module] | None:
    """ESPnet's ConformerEncoder, or None when espnet is not installed here."""
    try:
        with contextlib.redirect_stdout(sys.stderr):  # espnet prints on import
            from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
    except ImportError:
        return None
    return ConformerEncoder


class OursCTC(nn.Module):
    """speechforge encoder + CTC head + the registered ``ctc`` loss (the training path)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.ctc = CTCHead(encoder.output_dim, VOCAB)
        self.loss = default_host().registry.build("loss", {"type": "ctc"}, "loss")

    def forward(self, feats: Tensor, lengths: Tensor, targets: Tensor, target_lens: Tensor) -> Tensor:
        out, out_lens = self.encoder(feats, lengths)
        return self.loss(LossInputs(self, out, out_lens, targets, target_lens))


class EspnetCTC(nn.Module):
    """ESPnet encoder + a linear layer + ``F.ctc_loss`` with the same normalisation as ours."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.ctc_lo = nn.Linear(encoder.output_size(), VOCAB)

    def forward(self, feats: Tensor, lengths: Tensor, targets: Tensor, target_lens: Tensor) -> Tensor:
        out, out_lens, _ = self.encoder(feats, lengths)
        log_probs = torch.log_softmax(self.ctc_lo(out), dim=-1)
        loss = F.ctc_loss(
            log_probs.transpose(0, 1), targets, out_lens, target_lens, reduction="sum", zero_infinity=True
        )
        return loss / out.size(0)


def build_ours() -> nn.Module:
    return default_host().registry.build("encoder", OUR_CONFIG, "encoder", input_dim=INPUT_DIM)


def build_espnet(espnet_cls: type[nn.Module]) -> nn.Module:
    return espnet_cls(INPUT_DIM, **ESPNET_CONFIG)


def inputs(batch: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Unpadded 10 s features, their lengths, and random CTC targets (no blanks)."""
    gen = torch.Generator().manual_seed(batch)
    feats = torch.randn(batch, FRAMES, INPUT_DIM, generator=gen)
    lengths = torch.full((batch,), FRAMES, dtype=torch.long)
    targets = torch.randint(1, VOCAB, (batch, TARGET_LEN), generator=gen)
    target_lens = torch.full((batch,), TARGET_LEN, dtype=torch.long)
    return feats, lengths, targets, target_lens


def inference_fn(encoder: nn.Module, batch: int) -> Callable[[], None]:
    feats, lengths, _, _ = inputs(batch)

    def run() -> None:
        with torch.no_grad():
            encoder(feats, lengths)

    return run


def train_fn(model: nn.Module, batch: int) -> Callable[[], None]:
    feats, lengths, targets, target_lens = inputs(batch)

    def run() -> None:
        model.zero_grad(set_to_none=True)
        model(feats, lengths, targets, target_lens).backward()

    return run


def time_alternating(fns: dict[str, Callable[[], None]], warmup: int, repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, calls interleaved A B A B ..."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def check_parity(ours: nn.Module, espnet: nn.Module) -> float:
    """Copy ESPnet's weights into ours and return the largest output difference (eval)."""
    ours.load_state_dict(convert_espnet_conformer(espnet.state_dict()), strict=True)
    feats, lengths, _, _ = inputs(2)
    with torch.no_grad():
        expected, expected_lens, _ = espnet.eval()(feats, lengths)
        got, got_lens = ours.eval()(feats, lengths)
    if not torch.equal(expected_lens, got_lens):
        raise AssertionError(f"output lengths differ: espnet {expected_lens.tolist()}, ours {got_lens.tolist()}")
    diff = (expected - got).abs().max().item()
    if diff > TOLERANCE:
        raise AssertionError(f"outputs differ by {diff:.3g} > {TOLERANCE}: the two encoders compute different functions")
    return diff


def memory_worker(toolkit: str, mode: str, batch: int, threads: int) -> None:
    """Run in a fresh process: print the peak RSS growth (MiB) of two steps of ``mode``.

    The high-water mark is reset right before the steps (``/proc/self/clear_refs``): a forked
    child's ``ru_maxrss`` starts from its parent's resident size, so it cannot serve here.
    """
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if toolkit == "espnet":
        espnet_cls = load_espnet_encoder_class()
        if espnet_cls is None:
            raise SystemExit("espnet is not importable in this environment")
        encoder = build_espnet(espnet_cls)
        model: nn.Module = EspnetCTC(encoder)
    else:
        encoder = build_ours()
        model = OursCTC(encoder)
    if mode == "infer":
        ready = encoder.eval() if toolkit == "espnet" else optimize_for_cpu_inference(encoder, inplace=True)
        fn = inference_fn(ready, batch)
    else:
        fn = train_fn(model.train(), batch)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current VmRSS
    base = status_mb("VmRSS")
    fn()
    fn()
    print(max(status_mb("VmHWM") - base, 0.0))


def measure_memory(toolkit: str, mode: str, batch: int, threads: int) -> float:
    """Peak RSS growth in MiB of ``mode`` for ``toolkit``, from a fresh subprocess."""
    out = subprocess.run(
        [sys.executable, __file__, "--threads", str(threads), "--memory-worker", toolkit, mode, str(batch)],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def our_variant_times(ours: nn.Module, ours_ctc: nn.Module, warmup: int, repeats: int, compile_: bool) -> dict[str, Any]:
    """bf16 autocast and (optionally) torch.compile figures of ours, apart from the comparison."""
    result: dict[str, Any] = {}

    def autocast(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                fn()

        return run

    inference_model = optimize_for_cpu_inference(ours)
    for batch in (1, 8):
        t = time_alternating({"bf16": autocast(inference_fn(inference_model, batch))}, warmup, repeats)
        result[f"ours_bf16_infer_b{batch}_s"] = t["bf16"]
    t = time_alternating({"bf16": autocast(train_fn(ours_ctc.train(), 8))}, warmup, repeats)
    result["ours_bf16_train_b8_s"] = t["bf16"]
    if compile_:
        compiled = torch.compile(ours)
        compiled_ctc = OursCTC(compiled)
        start = time.perf_counter()
        compiled.eval()
        feats, lengths, _, _ = inputs(1)
        with torch.no_grad():
            expected = ours(feats, lengths)[0]
            got = compiled(feats, lengths)[0]
        result["ours_compile_warmup_s"] = time.perf_counter() - start
        result["ours_compile_max_abs_diff"] = (expected - got).abs().max().item()
        for batch in (1, 8):
            t = time_alternating({"c": inference_fn(compiled.eval(), batch)}, warmup, repeats)
            result[f"ours_compile_infer_b{batch}_s"] = t["c"]
        compiled_ctc.train()
        t = time_alternating({"c": train_fn(compiled_ctc, 8)}, warmup, repeats)
        result["ours_compile_train_b8_s"] = t["c"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and no torch.compile")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile figures")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument(
        "--threads", type=int, default=DEFAULT_THREADS, help="torch threads (2 is the protocol; 1 resists a loaded machine)"
    )
    parser.add_argument("--memory-worker", nargs=3, metavar=("TOOLKIT", "MODE", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_worker:
        toolkit, mode, batch = args.memory_worker
        memory_worker(toolkit, mode, int(batch), args.threads)
        return

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    warmup, repeats = (1, 3) if args.quick else (2, 7)
    espnet_cls = load_espnet_encoder_class()
    ours = build_ours()
    result: dict[str, Any] = {
        "torch": torch.__version__,
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "loadavg_start": os.getloadavg()[0],
        "frames": FRAMES,
        "warmup": warmup,
        "repeats": repeats,
        "espnet": espnet_cls is not None,
    }
    models: dict[str, nn.Module] = {"ours": ours}  # inference runs optimize_for_cpu_inference(ours)
    ctc_models: dict[str, nn.Module] = {"ours": OursCTC(ours)}
    if espnet_cls is None:
        result["note"] = "espnet is not importable here: speechforge figures only (make bench-peers)"
    else:
        espnet = build_espnet(espnet_cls)
        result["max_abs_diff"] = check_parity(ours, espnet)
        models["espnet"] = espnet
        ctc_models["espnet"] = EspnetCTC(espnet)
        ctc_models["espnet"].ctc_lo.load_state_dict(ctc_models["ours"].ctc.ctc_lo.state_dict())

    inference_models = {**models, "ours": optimize_for_cpu_inference(ours)}
    for batch in (1, 8):
        t = time_alternating({n: inference_fn(m.eval(), batch) for n, m in inference_models.items()}, warmup, repeats)
        for name, seconds in t.items():
            result[f"{name}_infer_b{batch}_s"] = seconds
    t = time_alternating({n: train_fn(m.train(), 8) for n, m in ctc_models.items()}, warmup, repeats)
    for name, seconds in t.items():
        result[f"{name}_train_b8_s"] = seconds
    if not args.no_memory:
        for name in models:
            result[f"{name}_infer_b8_peak_mib"] = measure_memory(name, "infer", 8, args.threads)
            result[f"{name}_train_b8_peak_mib"] = measure_memory(name, "train", 8, args.threads)
    if "espnet" in models:
        result["infer_speedup_b1"] = result["espnet_infer_b1_s"] / result["ours_infer_b1_s"]
        result["infer_speedup_b8"] = result["espnet_infer_b8_s"] / result["ours_infer_b8_s"]
        result["train_speedup_b8"] = result["espnet_train_b8_s"] / result["ours_train_b8_s"]
        if not args.no_memory:
            result["infer_peak_memory_ratio_b8"] = result["espnet_infer_b8_peak_mib"] / result["ours_infer_b8_peak_mib"]
            result["train_peak_memory_ratio"] = result["espnet_train_b8_peak_mib"] / result["ours_train_b8_peak_mib"]
    result.update(
        our_variant_times(ours, ctc_models["ours"], warmup, repeats, not (args.quick or args.no_compile))
    )
    result["loadavg_end"] = os.getloadavg()[0]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
