"""Fixtures made by the real k2 1.23.4 (tools/make_rnnt_fixtures.sh) and a naive lattice."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"
RNNT_TYPES = ("regular", "modified", "constrained")


def load_k2_cases() -> list[dict]:
    """Every committed k2 case (12: three topologies x delay penalty x smoothing), each with an
    ``id`` naming its settings."""
    cases = []
    for rnnt_type in RNNT_TYPES:
        for case in torch.load(FIXTURES / f"pruned_rnnt_{rnnt_type}.pt", weights_only=True):
            case["id"] = f"{rnnt_type}-delay{case['delay_penalty']}-lm{case['lm_only_scale']}-am{case['am_only_scale']}"
            cases.append(case)
    return cases


K2_CASES = load_k2_cases()


@pytest.fixture(params=K2_CASES, ids=[c["id"] for c in K2_CASES])
def k2_case(request) -> dict:
    return request.param
