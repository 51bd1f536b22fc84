"""Mamba block forward on CPU: the fused CPU kernel (``scan: auto``) and the chunked PyTorch
scan against the plain sequential scan.

Usage::

    .venv/bin/python bench/mamba.py            # L in 500, 2000, 8000
    .venv/bin/python bench/mamba.py --quick    # L in 500, 2000
    .venv/bin/python bench/mamba.py --lengths 64 --repeats 1   # smoke run

Batch 4, d_model 256, d_inner 512, d_state 16, 2 threads, inference (no grad) on blocks made
ready by :func:`~speechforge.modules.inference_transform.optimize_for_cpu_inference`. For each L it
times the forward of one ``mamba`` encoder block (``scan: auto``, ``chunked`` and
``sequential``, same weights; on CPU ``auto`` is the fused kernel when it builds, else the
chunked scan: ``auto_scan`` says which) and of the selective scan alone on that block's own
scan inputs; each time is the best of ``--repeats`` runs, after one warm-up call at L = 64
(which also builds the kernel). ``--threads`` changes the thread count (on a loaded machine,
2 threads measure scheduler waits more than work). Prints one JSON object;
``scan_speedup_at_2000`` is sequential / auto block forward time at L = 2000,
``chunked_speedup_at_2000`` sequential / chunked.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

import torch

from speechforge.modules.inference_transform import optimize_for_cpu_inference
from speechforge_plugins.mamba import mamba_mixer
from speechforge_plugins.mamba.mamba_block import MambaBlock
from speechforge_plugins.mamba.selective_scan import selective_scan_chunked, selective_scan_sequential
from speechforge_plugins.mamba.selective_scan_cpu import cpu_kernel_available, selective_scan_cpu

BATCH, D_MODEL, EXPAND, D_STATE, THREADS = 4, 256, 2, 16, 2
LENGTHS = (500, 2000, 8000)
QUICK_LENGTHS = (500, 2000)


def best_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def scan_inputs(block: MambaBlock, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """u, delta, A, B, C exactly as the block's mixer hands them to the chunked scan."""
    recorded = []

    def recording_scan(*args: torch.Tensor, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
        recorded.append(args[:5])
        return selective_scan_chunked(*args, **kwargs)

    original = mamba_mixer.selective_scan_chunked
    mamba_mixer.selective_scan_chunked = recording_scan
    try:
        block(x, None, None)
    finally:
        mamba_mixer.selective_scan_chunked = original
    return recorded[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="L in 500, 2000")
    parser.add_argument("--lengths", type=int, nargs="+", help="these L instead (a smoke run: --lengths 64)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per measurement (best is kept)")
    parser.add_argument("--chunk-size", type=int, default=64, help="chunk size of the chunked scan")
    parser.add_argument("--threads", type=int, default=THREADS, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_before = os.getloadavg()[0]
    blocks = {
        scan: MambaBlock(d_model=D_MODEL, ffn={"type": "dense"}, expand=EXPAND, d_state=D_STATE,
                         chunk_size=args.chunk_size, scan=scan).eval()
        for scan in ("auto", "chunked", "sequential")
    }  # fmt: skip
    for scan, block in blocks.items():
        block.load_state_dict(blocks["chunked"].state_dict())
        blocks[scan] = optimize_for_cpu_inference(block, inplace=True)
    kernel = cpu_kernel_available()
    results = []
    with torch.no_grad():
        for block in blocks.values():  # warm-up: thread pool, allocator, the kernel's build
            block(torch.randn(BATCH, 64, D_MODEL), None, None)
        for length in args.lengths or (QUICK_LENGTHS if args.quick else LENGTHS):
            x = torch.randn(BATCH, length, D_MODEL)
            row: dict[str, float] = {"L": length}
            for scan, block in blocks.items():
                row[f"block_{scan}_s"] = round(best_time(lambda: block(x, None, None), args.repeats), 4)
            inputs = scan_inputs(blocks["chunked"], x)
            if kernel:
                row["scan_cpu_kernel_s"] = round(best_time(lambda: selective_scan_cpu(*inputs), args.repeats), 4)
            row["scan_chunked_s"] = round(
                best_time(lambda: selective_scan_chunked(*inputs, chunk_size=args.chunk_size), args.repeats), 4
            )
            row["scan_sequential_s"] = round(best_time(lambda: selective_scan_sequential(*inputs), args.repeats), 4)
            row["block_speedup"] = round(row["block_sequential_s"] / row["block_auto_s"], 2)
            row["chunked_block_speedup"] = round(row["block_sequential_s"] / row["block_chunked_s"], 2)
            if kernel:
                row["scan_only_speedup"] = round(row["scan_sequential_s"] / row["scan_cpu_kernel_s"], 2)
            row["chunked_scan_only_speedup"] = round(row["scan_sequential_s"] / row["scan_chunked_s"], 2)
            results.append(row)
    at_2000 = next((r for r in results if r["L"] == 2000), {})
    print(
        json.dumps(
            {
                "benchmark": "mamba block forward, fused CPU kernel and chunked vs sequential scan, CPU, no grad",
                "config": {"batch": BATCH, "d_model": D_MODEL, "d_inner": EXPAND * D_MODEL, "d_state": D_STATE,
                           "threads": args.threads, "chunk_size": args.chunk_size, "repeats": args.repeats},
                "auto_scan": "cpu_kernel" if kernel else "chunked (the fused kernel did not build)",
                "load_before": round(load_before, 2),
                "load_after": round(os.getloadavg()[0], 2),
                "results": results,
                "scan_speedup_at_2000": at_2000.get("block_speedup"),
                "chunked_speedup_at_2000": at_2000.get("chunked_block_speedup"),
                "scan_only_speedup_at_2000": at_2000.get("scan_only_speedup"),
                "chunked_scan_only_speedup_at_2000": at_2000.get("chunked_scan_only_speedup"),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
