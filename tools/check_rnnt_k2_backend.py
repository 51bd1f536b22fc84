"""Check the rnnt plugin's ``backend='k2'`` path against its native one, in .venv-k2 (where k2
imports): ``pruned_transducer_loss`` with a tanh joiner on a padded batch, every topology, delay
penalty and smoothing on; losses, prune ranges and input gradients must agree.

Run by tools/make_rnnt_fixtures.sh; directly (``plugins`` made importable as
``speechforge_plugins``, which the project's editable install does in .venv)::

    mkdir -p /tmp/sfp && ln -sfn "$PWD/plugins" /tmp/sfp/speechforge_plugins
    PYTHONPATH=/tmp/sfp .venv-k2/bin/python tools/check_rnnt_k2_backend.py
"""
from __future__ import annotations

import torch
from torch import nn

from speechforge_plugins.rnnt.lattice import make_boundary
from speechforge_plugins.rnnt.pruned_transducer_loss import pruned_transducer_loss

B, T, S, D, V = 4, 40, 12, 16, 30


def main() -> None:
    torch.manual_seed(0)
    encoder_out = torch.randn(B, T, D, requires_grad=True)
    predictor_out = torch.randn(B, S + 1, D, requires_grad=True)
    am_proj, lm_proj, output = nn.Linear(D, V), nn.Linear(D, V), nn.Linear(D, V)
    symbols = torch.randint(1, V, (B, S))
    boundary = make_boundary(torch.tensor([40, 33, 25, 20]), torch.tensor([12, 9, 7, 12]))
    for rnnt_type in ("regular", "modified", "constrained"):
        results = {}
        for backend in ("native", "k2"):
            losses = pruned_transducer_loss(
                am_proj(encoder_out), lm_proj(predictor_out), encoder_out, predictor_out,
                lambda am, lm: output(torch.tanh(am + lm)), symbols, boundary,
                rnnt_type=rnnt_type, delay_penalty=0.05, lm_only_scale=0.25, am_only_scale=0.1, backend=backend,
            )
            grads = torch.autograd.grad(0.5 * losses.simple + losses.pruned, (encoder_out, predictor_out))
            results[backend] = (losses, grads)
        (native, native_grads), (k2, k2_grads) = results["native"], results["k2"]
        assert torch.equal(native.ranges, k2.ranges), f"{rnnt_type}: prune ranges differ"
        torch.testing.assert_close(native.simple, k2.simple, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(native.pruned, k2.pruned, rtol=1e-4, atol=1e-4)
        for ours, theirs in zip(native_grads, k2_grads):
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
        print(f"check_rnnt_k2_backend: {rnnt_type}: native == k2 (simple {float(native.simple):.3f}, pruned {float(native.pruned):.3f})")


if __name__ == "__main__":
    main()
