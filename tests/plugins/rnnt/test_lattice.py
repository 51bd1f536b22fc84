"""The anti-diagonal recursion against a naive double loop over (s, t), on padded batches."""
from __future__ import annotations

import math

import pytest
import torch

from speechforge_plugins.rnnt.lattice import make_boundary, mutual_information_recursion


def naive_scores(px: torch.Tensor, py: torch.Tensor, boundary: torch.Tensor) -> torch.Tensor:
    """k2's documented recursion, one node at a time, in float64."""
    regular = px.size(2) == py.size(2) + 1
    out = []
    for b in range(px.size(0)):
        S, T = int(boundary[b, 2]), int(boundary[b, 3])
        p = [[-math.inf] * (T + 1) for _ in range(S + 1)]
        for s in range(S + 1):
            for t in range(T + 1):
                if s == t == 0:
                    p[s][t] = 0.0
                    continue
                terms = []
                if t > 0:
                    terms.append(p[s][t - 1] + float(py[b, s, t - 1]))
                if s > 0 and (regular or t > 0):
                    tt = t if regular else t - 1
                    terms.append(p[s - 1][tt] + float(px[b, s - 1, tt]))
                p[s][t] = torch.logsumexp(torch.tensor(terms, dtype=torch.float64), 0).item()
        out.append(p[S][T])
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("regular", [True, False], ids=["regular", "modified"])
def test_scores_and_gradients_equal_naive_recursion(regular: bool) -> None:
    g = torch.Generator().manual_seed(0)
    B, S, T = 3, 4, 6
    px = torch.randn(B, S, T + 1 if regular else T, generator=g, dtype=torch.float64, requires_grad=True)
    py = torch.randn(B, S + 1, T, generator=g, dtype=torch.float64, requires_grad=True)
    boundary = make_boundary(torch.tensor([6, 4, 5]), torch.tensor([4, 2, 3]))
    scores, (px_grad, py_grad) = mutual_information_recursion(px, py, boundary)
    torch.testing.assert_close(scores, naive_scores(px.detach(), py.detach(), boundary))
    # the occupation gradients returned in the forward are the autograd gradients of the scores
    ref_px, ref_py = torch.autograd.grad(scores.sum(), (px, py))
    torch.testing.assert_close(px_grad, ref_px)
    torch.testing.assert_close(py_grad, ref_py)
    # ... and they are occupation probabilities: every path has S_b symbols and T_b frames, of
    # which a regular path spends all T_b on blanks, a modified one T_b - S_b
    symbols, frames = boundary[:, 2].double(), boundary[:, 3].double()
    torch.testing.assert_close(px_grad.sum(dim=(1, 2)), symbols)
    torch.testing.assert_close(py_grad.sum(dim=(1, 2)), frames if regular else frames - symbols)


def test_values_outside_the_boundary_do_not_matter() -> None:
    g = torch.Generator().manual_seed(1)
    px, py = torch.randn(2, 3, 6, generator=g), torch.randn(2, 4, 5, generator=g)
    boundary = make_boundary(torch.tensor([3, 5]), torch.tensor([2, 3]))
    scores, _ = mutual_information_recursion(px, py, boundary)
    px2, py2 = px.clone(), py.clone()
    px2[0, 2:], px2[0, :, 4:] = 50.0, -float("inf")  # past S_0 = 2 symbols and T_0 = 3 frames
    py2[0, 3:], py2[0, :, 3:] = -float("inf"), 50.0
    scores2, (px_grad, py_grad) = mutual_information_recursion(px2, py2, boundary)
    torch.testing.assert_close(scores2, scores)
    assert bool(torch.isfinite(px_grad).all()) and bool(torch.isfinite(py_grad).all())
    assert float(px_grad[0, 2:].abs().sum() + py_grad[0, :, 3:].abs().sum()) == 0.0


def test_bad_shapes_and_boundaries_are_refused() -> None:
    px, py = torch.zeros(2, 3, 6), torch.zeros(2, 4, 5)
    with pytest.raises(ValueError, match=r"px must be \(B, S, T\) or \(B, S, T\+1\)"):
        mutual_information_recursion(torch.zeros(2, 3, 8), py)
    with pytest.raises(ValueError, match=r"exceed the lattice S=3, T=5"):
        mutual_information_recursion(px, py, make_boundary(torch.tensor([6, 5]), torch.tensor([3, 3])))
    with pytest.raises(ValueError, match=r"start at \(0, 0\)"):
        mutual_information_recursion(px, py, torch.tensor([[1, 0, 3, 5], [0, 0, 3, 5]]))
