"""Transducer losses with their joiner: time and peak memory of forward + backward.

Usage::

    .venv/bin/python bench/rnnt_loss.py               # every case, 3 timed repeats each
    .venv/bin/python bench/rnnt_loss.py --repeats 1   # a smoke run
    bash tools/make_rnnt_fixtures.sh                  # once: builds .venv-k2, adds the k2 case

Shapes as issue 16 asks: B=8, T=300 frames, U=60 symbols, V=500 tokens, encoder and predictor
outputs of 512 dims with ``requires_grad``, joiner dim 512, 2 threads (``--threads``). Cases:

- ``torchaudio_full`` / ``native_full``: the joiner (``output(tanh(enc_proj(enc) +
  pred_proj(pred)))``) on every (t, u), (B, T, U+1, V) logits, then the full loss
  (``torchaudio.functional.rnnt_loss`` / this plugin's native recursion);
- ``native_pruned``: k2's recipe in this plugin's PyTorch: simple loss on the two vocabulary
  projections (lm_only_scale 0.25), prune ranges with s_range 5, the joiner on the
  (B, T, 5, J) gathered inputs only, pruned loss; loss = 0.5 * simple + pruned;
- ``k2_pruned``: the same through the real k2 1.23.4 (torch 1.13.1) in ``.venv-k2``, when that
  environment exists.

Each case runs in a fresh subprocess (this file with ``--case``): one warm-up call, whose peak
RSS above the RSS just before it is the case's memory, then ``--repeats`` timed calls (median).
Prints one JSON line per case, then one compact JSON line with ``pruned_speedup_vs_torchaudio``
(torchaudio full time / native pruned time), ``pruned_memory_ratio_vs_torchaudio`` (torchaudio
full memory / native pruned memory) and, with the k2 case, ``pruned_speedup_vs_k2`` (k2 pruned
time / native pruned time: above 1, the native one is faster).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

B, T, U, V = 8, 300, 60, 500
DIM, JOINER_DIM = 512, 512
S_RANGE = 5
LM_ONLY_SCALE = 0.25
SIMPLE_WEIGHT = 0.5
CASES = ("torchaudio_full", "native_full", "native_pruned", "k2_pruned")
ROOT = Path(__file__).resolve().parents[1]
K2_PYTHON = ROOT / ".venv-k2" / "bin" / "python"


class Joiner(nn.Module):
    """icefall's joiner: ``output(tanh(enc_proj(enc) + pred_proj(pred)))``; the projections are
    applied before any broadcast or gather, the output on the combined (..., J) tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder_proj = nn.Linear(DIM, JOINER_DIM)
        self.predictor_proj = nn.Linear(DIM, JOINER_DIM)
        self.output = nn.Linear(JOINER_DIM, V)

    def forward(self, am: Tensor, lm: Tensor) -> Tensor:
        """Args: am, lm projected inputs broadcastable to (B, T, U', J). Returns (B, T, U', V)."""
        return self.output(torch.tanh(am + lm))


class Inputs:
    """Encoder / predictor outputs, targets and lengths of one padded batch (fixed seed)."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.encoder_out = torch.randn(B, T, DIM, generator=g).requires_grad_(True)  # (B, T, D)
        self.predictor_out = torch.randn(B, U + 1, DIM, generator=g).requires_grad_(True)  # (B, U+1, D)
        self.targets = torch.randint(1, V, (B, U), generator=g)
        self.frame_lengths = torch.linspace(T, T * 0.8, B).long()  # padded: 300 .. 240 frames
        self.target_lengths = torch.linspace(U, U * 0.8, B).long()
        self.boundary = torch.stack(
            [torch.zeros(B, dtype=torch.long), torch.zeros(B, dtype=torch.long), self.target_lengths, self.frame_lengths], 1
        )


def full_step(backend: str) -> Callable[[], Tensor]:
    from speechforge_plugins.rnnt.full_loss import rnnt_loss

    x, joiner = Inputs(), Joiner()

    def step() -> Tensor:
        am = joiner.encoder_proj(x.encoder_out).unsqueeze(2)  # (B, T, 1, J)
        lm = joiner.predictor_proj(x.predictor_out).unsqueeze(1)  # (B, 1, U+1, J)
        logits = joiner(am, lm)  # (B, T, U+1, V)
        loss = rnnt_loss(logits, x.targets, x.frame_lengths, x.target_lengths, reduction="sum", backend=backend)
        loss.backward()
        return loss

    return step


def _pruned_parts() -> tuple[Inputs, Joiner, nn.Linear, nn.Linear]:
    return Inputs(), Joiner(), nn.Linear(DIM, V), nn.Linear(DIM, V)


def native_pruned_step() -> Callable[[], Tensor]:
    from speechforge_plugins.rnnt.pruned_transducer_loss import pruned_transducer_loss

    x, joiner, simple_am_proj, simple_lm_proj = _pruned_parts()

    def step() -> Tensor:
        losses = pruned_transducer_loss(
            simple_am_proj(x.encoder_out), simple_lm_proj(x.predictor_out),
            joiner.encoder_proj(x.encoder_out), joiner.predictor_proj(x.predictor_out), joiner,
            x.targets, x.boundary, s_range=S_RANGE, lm_only_scale=LM_ONLY_SCALE, reduction="sum",
        )
        loss = SIMPLE_WEIGHT * losses.simple + losses.pruned
        loss.backward()
        return loss

    return step


def k2_pruned_step() -> Callable[[], Tensor]:
    """k2's calls as icefall's transducer ``forward`` makes them (runs in .venv-k2)."""
    import k2

    x, joiner, simple_am_proj, simple_lm_proj = _pruned_parts()

    def step() -> Tensor:
        simple, (px_grad, py_grad) = k2.rnnt_loss_smoothed(
            lm=simple_lm_proj(x.predictor_out), am=simple_am_proj(x.encoder_out), symbols=x.targets,
            termination_symbol=0, lm_only_scale=LM_ONLY_SCALE, am_only_scale=0.0, boundary=x.boundary,
            reduction="sum", return_grad=True,
        )
        ranges = k2.get_rnnt_prune_ranges(px_grad=px_grad, py_grad=py_grad, boundary=x.boundary, s_range=S_RANGE)
        am_pruned, lm_pruned = k2.do_rnnt_pruning(
            am=joiner.encoder_proj(x.encoder_out), lm=joiner.predictor_proj(x.predictor_out), ranges=ranges
        )
        logits = joiner(am_pruned, lm_pruned)  # (B, T, s_range, V)
        pruned = k2.rnnt_loss_pruned(
            logits=logits, symbols=x.targets, ranges=ranges, termination_symbol=0, boundary=x.boundary, reduction="sum"
        )
        loss = SIMPLE_WEIGHT * simple + pruned
        loss.backward()
        return loss

    return step


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_case(case: str, repeats: int, threads: int) -> dict:
    """One case in this process: memory of the first call, median time of the next ones."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if case == "torchaudio_full":
        step = full_step("torchaudio")
    elif case == "native_full":
        step = full_step("native")
    elif case == "native_pruned":
        step = native_pruned_step()
    elif case == "k2_pruned":
        step = k2_pruned_step()
    else:
        raise SystemExit(f"unknown case {case!r}; cases: {', '.join(CASES)}")
    before = _rss_mb()
    loss = step()
    memory = _peak_rss_mb() - before
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {
        "case": case, "seconds": round(statistics.median(times), 4), "peak_rss_growth_mb": round(memory, 1),
        "loss": round(float(loss.detach()), 2), "torch": torch.__version__,
    }


def run_subprocess(case: str, python: Path | str, repeats: int, threads: int) -> dict:
    command = [str(python), __file__, "--case", case, "--repeats", str(repeats), "--threads", str(threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"bench case {case} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=CASES, help="run one case in this process (used by the driver)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.repeats, args.threads)))
        return
    results = {}
    for case in CASES:
        if case == "k2_pruned" and not K2_PYTHON.exists():
            print(json.dumps({"case": case, "skipped": f"{K2_PYTHON} missing (bash tools/make_rnnt_fixtures.sh)"}))
            continue
        python = K2_PYTHON if case == "k2_pruned" else sys.executable
        results[case] = run_subprocess(case, python, args.repeats, args.threads)
        print(json.dumps(results[case]))
    pruned, full = results["native_pruned"], results["torchaudio_full"]
    summary = {
        "pruned_speedup_vs_torchaudio": round(full["seconds"] / pruned["seconds"], 2),
        "pruned_memory_ratio_vs_torchaudio": round(full["peak_rss_growth_mb"] / pruned["peak_rss_growth_mb"], 2),
        "native_full_vs_torchaudio_time": round(results["native_full"]["seconds"] / full["seconds"], 2),
    }
    if "k2_pruned" in results:
        summary["pruned_speedup_vs_k2"] = round(results["k2_pruned"]["seconds"] / pruned["seconds"], 2)
    print(json.dumps(summary, separators=(",", ":")))


if __name__ == "__main__":
    main()
