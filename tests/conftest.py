"""Shared fixtures: deterministic seeds and a tiny model config."""
from __future__ import annotations

from typing import Any

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def tiny_config() -> dict[str, Any]:
    """A 2-block, 32-dim Conformer-CTC model description."""
    return {
        "vocab_size": 20,
        "frontend": {"type": "fbank", "num_mel_bins": 40},
        "encoder": {
            "type": "conformer",
            "d_model": 32,
            "heads": 4,
            "num_blocks": 2,
            "ffn": {"type": "dense", "hidden": 64},
            "encoder_block": {"type": "conformer", "conv_kernel": 5},
        },
        "losses": [{"type": "ctc", "weight": 1.0}],
    }
