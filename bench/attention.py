"""Self-attention time and peak memory: core's reference ``mha`` (``use_sdpa=False``, scores
materialised) against the ``flash`` plugin, on CPU.

Usage::

    .venv/bin/python bench/attention.py            # T in 500, 1000, 2000, 4000
    .venv/bin/python bench/attention.py --quick    # T in 500, 1000; inference at 4000 too

8 heads of 64 dims (D = 512), batch 4, a key padding mask (lengths T, 7T/8, 3T/4, T/2),
2 threads. Every (implementation, mode, T) runs in a fresh subprocess: the module and inputs
are built and one small call warms the kernels up, then the peak-RSS mark is reset
(/proc/self/clear_refs) and the timed call runs; peak memory is VmHWM after the call minus
VmRSS before it. Prints one JSON object; ``memory_ratio_at_4000`` is reference peak / flash
peak for inference at T = 4000.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from proc_status import status_mb  # bench/proc_status.py, beside this script

D_MODEL, HEADS, BATCH, THREADS = 512, 8, 4, 2
LENGTHS = (500, 1000, 2000, 4000)
QUICK_LENGTHS = (500, 1000)
IMPLEMENTATIONS = ("reference", "flash")
MODES = ("inference", "forward_backward")


def worker(implementation: str, mode: str, length: int) -> dict[str, float]:
    """One measurement, in this (fresh) process."""
    import torch

    from speechforge.modules.multi_head_attention import MultiHeadAttention
    from speechforge_plugins.flash_attention.flash_attention import FlashAttention

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    if implementation == "reference":
        module = MultiHeadAttention(d_model=D_MODEL, heads=HEADS, use_sdpa=False)
    else:
        module = FlashAttention(d_model=D_MODEL, heads=HEADS)
    module.eval()

    def inputs(t: int) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([t, t * 7 // 8, t * 3 // 4, t // 2])
        mask = (torch.arange(t) < lengths[:, None]).unsqueeze(1)  # (B, 1, T)
        return torch.randn(BATCH, t, D_MODEL, requires_grad=mode != "inference"), mask

    def call(x: torch.Tensor, mask: torch.Tensor) -> None:
        if mode == "inference":
            with torch.no_grad():
                module(x, x, x, mask)
        else:
            out, _ = module(x, x, x, mask)
            out.sum().backward()

    call(*inputs(64))  # warm-up: thread pool, kernels
    x, mask = inputs(length)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    before = status_mb("VmRSS")
    start = time.perf_counter()
    call(x, mask)
    seconds = time.perf_counter() - start
    return {"time_s": round(seconds, 4), "peak_mb": round(status_mb("VmHWM") - before, 1)}


def measure(implementation: str, mode: str, length: int) -> dict[str, float]:
    """Run :func:`worker` in a fresh interpreter and read its JSON line."""
    command = [sys.executable, __file__, "--worker", implementation, mode, str(length)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="T in 500, 1000 (+ inference at 4000)")
    parser.add_argument("--worker", nargs=3, metavar=("IMPL", "MODE", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        implementation, mode, length = args.worker
        print(json.dumps(worker(implementation, mode, int(length))))
        return
    load_before = os.getloadavg()[0]
    runs = [(t, mode) for t in (QUICK_LENGTHS if args.quick else LENGTHS) for mode in MODES]
    if args.quick:
        runs.append((4000, "inference"))
    results = []
    for length, mode in runs:
        row = {"T": length, "mode": mode}
        for implementation in IMPLEMENTATIONS:
            row[implementation] = measure(implementation, mode, length)
        row["memory_ratio"] = round(row["reference"]["peak_mb"] / max(row["flash"]["peak_mb"], 1e-3), 2)
        row["speedup"] = round(row["reference"]["time_s"] / row["flash"]["time_s"], 2)
        results.append(row)
    at_4000 = next(r for r in results if r["T"] == 4000 and r["mode"] == "inference")
    print(
        json.dumps(
            {
                "benchmark": "self-attention, reference mha (use_sdpa=False) vs flash plugin, CPU",
                "config": {"d_model": D_MODEL, "heads": HEADS, "batch": BATCH, "threads": THREADS,
                           "mask": "key padding, lengths T, 7T/8, 3T/4, T/2"},
                "load_before": round(load_before, 2),
                "load_after": round(os.getloadavg()[0], 2),
                "results": results,
                "memory_ratio_at_4000": at_4000["memory_ratio"],
                "speedup_at_4000": at_4000["speedup"],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
