"""Loading and decoding the paper-shaped USM RNN-T packed (Exp5, f32 scales) against float.

Usage::

    .venv/bin/python bench/quant.py                       # conf/usm_rnnt_binary.yaml (902.8M)
    .venv/bin/python bench/quant.py --config egs/librispeech/conf/usm_rnnt_small_binary.yaml

A setup process builds the config's model with random weights and writes two checkpoints into a
temporary directory (on the same disk as ``--workdir``): the float model (3.6 GB for
usm_rnnt) and its packed export (``Quantizer.export``: 1-bit codes 8 per byte, one f32 scale per
64-wide block, float layers as they are). Then each side runs in a fresh interpreter, 2
threads: load (built with parameters on the meta device, ``torch.load(mmap=True, weights_only=True)``,
``load_state_dict(assign=True)``; the packed side is ``build_model(packed=True)``, what
``speechforge.load`` of an export dir does) and decode one 10 s utterance of noise with
``transducer_greedy_search``. Before measuring, each worker builds and runs a 1-block, 64-wide
model of the same config (libraries and kernels load, e.g. torchaudio's extension), then resets
the peak-RSS mark (/proc/self/clear_refs). Peak memory is VmHWM at the end minus VmRSS before
loading (file pages of the mapped checkpoint count once touched); time is load + decode. The
workers run with ``MALLOC_MMAP_THRESHOLD_`` at 1 MiB, so freed temporaries (a packed layer's
unpacked blocks) go back to the system instead of staying in glibc's heap. Ends with one
compact JSON line: ``packed_memory_ratio`` (float peak / packed peak) and ``packed_time_ratio``
(packed time / float time).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from proc_status import status_mb  # bench/proc_status.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "egs" / "librispeech" / "conf" / "usm_rnnt_binary.yaml"
THREADS, SECONDS, SAMPLE_RATE = 2, 10.0, 16000
SIDES = ("float", "packed")
#: the warm-up model: the config's components at one block of width 64
WARM_UP = ("encoder.num_blocks=1", "encoder.d_model=64", "encoder.heads=4", "encoder.ffn.hidden=128",
           "decoder.predictor.hidden=64", "decoder.joiner.dim=64")
WORKER_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 20)}


def model_config(path: Path, quantized: bool, overrides: tuple[str, ...] = ()) -> dict:
    """The config with its vocabulary size (a character config gets 256), with or without its
    quantizer, without a CMVN stats file."""
    from speechforge.config import load_config
    from speechforge.decode.recognizer import without_cmvn_file

    config = without_cmvn_file(load_config(path, overrides))
    config.setdefault("vocab_size", (config.get("tokenizer") or {}).get("vocab_size", 256))
    return config if quantized else {k: v for k, v in config.items() if k != "quantizer"}


def setup(config_path: Path, workdir: Path) -> None:
    """Write float.pt and packed.pt of one random model (this process's memory is freed after)."""
    import torch

    from speechforge.builder import build_model, build_quantizer
    from speechforge.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    config = model_config(config_path, quantized=True)
    model = build_model(model_config(config_path, quantized=False)).eval()
    save_checkpoint({"model": model.state_dict()}, workdir / "float.pt")
    quantizer = build_quantizer(config)
    packed = quantizer.export(quantizer.prepare(model))  # the originals are the float tensors, not copies
    save_checkpoint({"model": packed, "packed": True}, workdir / "packed.pt")


def worker(side: str, config_path: Path, workdir: Path) -> dict[str, float]:
    """Load and decode once, in this (fresh) process."""
    import torch

    from speechforge.builder import build_model
    from speechforge.empty_parameters import parameters_on_meta
    from speechforge.plugins import default_host

    torch.set_num_threads(THREADS)
    host = default_host()
    speech = 0.1 * torch.randn(1, int(SECONDS * SAMPLE_RATE), generator=torch.Generator().manual_seed(0))
    speech_lens = torch.tensor([speech.size(1)])
    search = host.registry.build("search", "transducer_greedy_search", "search")
    warm_up = build_model(model_config(config_path, quantized=True, overrides=WARM_UP), host).eval()
    with torch.no_grad():
        search(warm_up, *warm_up.encode(speech[:, :SAMPLE_RATE], torch.tensor([SAMPLE_RATE])))
    del warm_up
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    before = status_mb("VmRSS")
    start = time.perf_counter()
    if side == "float":
        with parameters_on_meta():
            model = build_model(model_config(config_path, quantized=False), host)
    else:
        model = build_model(model_config(config_path, quantized=True), host, packed=True)
    state = torch.load(workdir / f"{side}.pt", map_location="cpu", weights_only=True, mmap=True)["model"]
    model.load_state_dict(state, assign=True)
    model.eval()
    loaded = time.perf_counter() - start
    with torch.no_grad():
        tokens = search(model, *model.encode(speech, speech_lens))
    seconds = time.perf_counter() - start
    return {
        "time_s": round(seconds, 2),
        "load_s": round(loaded, 2),
        "peak_mb": round(status_mb("VmHWM") - before, 1),
        "file_mb": round((workdir / f"{side}.pt").stat().st_size / 2**20, 1),
        "tokens": len(tokens[0]),
    }


def run_in_fresh_process(*args: str) -> str:
    command = [sys.executable, __file__, *args]
    return subprocess.run(command, capture_output=True, text=True, check=True, env={**os.environ, **WORKER_ENV}).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="a config with a quantizer: section")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()), help="where the checkpoints go")
    parser.add_argument("--setup", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker", nargs=2, metavar=("SIDE", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.setup:
        setup(args.config, args.setup)
        return
    if args.worker:
        side, workdir = args.worker
        print(json.dumps(worker(side, args.config, Path(workdir))))
        return
    load_before = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="quant_bench_", dir=args.workdir))
    try:
        run_in_fresh_process("--config", str(args.config), "--setup", str(workdir))
        results = {
            side: json.loads(run_in_fresh_process("--config", str(args.config), "--worker", side, str(workdir)).splitlines()[-1])
            for side in SIDES
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary = {
        "benchmark": f"load + decode {SECONDS:g} s, float vs packed ({args.config.name}), CPU, {THREADS} threads",
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        **results,
        "packed_memory_ratio": round(results["float"]["peak_mb"] / max(results["packed"]["peak_mb"], 1e-3), 2),
        "packed_time_ratio": round(results["packed"]["time_s"] / results["float"]["time_s"], 2),
    }
    print(json.dumps(summary, separators=(",", ":")))


if __name__ == "__main__":
    main()
