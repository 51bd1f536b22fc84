"""Write the pruned RNN-T parity fixtures with the REAL k2 1.23.4 (run in .venv-k2).

Rerun (builds .venv-k2 first when needed):   bash tools/make_rnnt_fixtures.sh
Directly, once .venv-k2 exists:               .venv-k2/bin/python tools/make_rnnt_fixtures.py tests/plugins/rnnt/fixtures

One file per topology, ``pruned_rnnt_<rnnt_type>.pt``: a list of cases (dicts of tensors, ints,
floats and strings, so they load with ``torch.load(weights_only=True)``), each a small padded
batch with random shapes and one of the four combinations of delay penalty (0 / 0.1) and
smoothing (none / lm_only_scale 0.25 + am_only_scale 0.1). A case holds the inputs (am, lm,
symbols, boundary) and k2's outputs: the simple loss per sequence, its occupation gradients
px_grad / py_grad and the gradients of the summed loss wrt am and lm; the prune ranges for
s_range; the pruned logits (``am_pruned + lm_pruned`` from ``k2.do_rnnt_pruning``), the pruned
loss per sequence and its gradient wrt those logits. Fixed seeds: reruns reproduce the files.
"""
from __future__ import annotations

import sys
from pathlib import Path

import k2
import torch

RNNT_TYPES = ("regular", "modified", "constrained")
SETTINGS = (  # (delay_penalty, lm_only_scale, am_only_scale)
    (0.0, 0.0, 0.0),
    (0.1, 0.0, 0.0),
    (0.0, 0.25, 0.1),
    (0.1, 0.25, 0.1),
)
BLANK = 0
VOCAB = 7
BATCH = 3


def _case(generator: torch.Generator, rnnt_type: str, delay_penalty: float, lm_only_scale: float, am_only_scale: float) -> dict:
    def randint(low: int, high: int, size: tuple = ()) -> torch.Tensor:
        return torch.randint(low, high + 1, size, generator=generator)

    T = int(randint(6, 12))
    S = int(randint(2, min(6, T)))
    frames = randint(S, T, (BATCH,))  # every sequence keeps S_b <= T_b (the modified topologies need it)
    frames[0] = T
    symbols_per_seq = torch.minimum(randint(1, S, (BATCH,)), frames)
    symbols_per_seq[1] = S
    boundary = torch.stack([torch.zeros(BATCH, dtype=torch.int64), torch.zeros(BATCH, dtype=torch.int64), symbols_per_seq, frames], dim=1)
    am = torch.randn(BATCH, T, VOCAB, generator=generator).requires_grad_(True)
    lm = torch.randn(BATCH, S + 1, VOCAB, generator=generator).requires_grad_(True)
    symbols = randint(1, VOCAB - 1, (BATCH, S))
    s_range = int(randint(2, 4))

    smoothed = lm_only_scale > 0 or am_only_scale > 0
    common = dict(symbols=symbols, termination_symbol=BLANK, boundary=boundary, rnnt_type=rnnt_type, delay_penalty=delay_penalty, reduction="none", return_grad=True)
    if smoothed:
        simple_loss, (px_grad, py_grad) = k2.rnnt_loss_smoothed(lm=lm, am=am, lm_only_scale=lm_only_scale, am_only_scale=am_only_scale, **common)
    else:
        simple_loss, (px_grad, py_grad) = k2.rnnt_loss_simple(lm=lm, am=am, **common)
    am_grad, lm_grad = torch.autograd.grad(simple_loss.sum(), (am, lm))

    ranges = k2.get_rnnt_prune_ranges(px_grad=px_grad, py_grad=py_grad, boundary=boundary, s_range=s_range)
    am_pruned, lm_pruned = k2.do_rnnt_pruning(am=am.detach(), lm=lm.detach(), ranges=ranges)
    logits = (am_pruned + lm_pruned).requires_grad_(True)
    pruned_loss = k2.rnnt_loss_pruned(
        logits=logits, symbols=symbols, ranges=ranges, termination_symbol=BLANK, boundary=boundary,
        rnnt_type=rnnt_type, delay_penalty=delay_penalty, reduction="none",
    )
    (logits_grad,) = torch.autograd.grad(pruned_loss.sum(), (logits,))
    return {
        "rnnt_type": rnnt_type, "delay_penalty": delay_penalty, "lm_only_scale": lm_only_scale,
        "am_only_scale": am_only_scale, "s_range": s_range, "blank": BLANK,
        "am": am.detach(), "lm": lm.detach(), "symbols": symbols, "boundary": boundary,
        "simple_loss": simple_loss.detach(), "px_grad": px_grad, "py_grad": py_grad,
        "am_grad": am_grad, "lm_grad": lm_grad, "ranges": ranges,
        "logits": logits.detach(), "pruned_loss": pruned_loss.detach(), "logits_grad": logits_grad,
    }


def main(out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for index, rnnt_type in enumerate(RNNT_TYPES):
        generator = torch.Generator().manual_seed(1234 + index)
        cases = [_case(generator, rnnt_type, *setting) for setting in SETTINGS]
        path = out / f"pruned_rnnt_{rnnt_type}.pt"
        torch.save(cases, path)
        print(f"make_rnnt_fixtures: wrote {path} ({len(cases)} cases, {path.stat().st_size} bytes)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/plugins/rnnt/fixtures")
