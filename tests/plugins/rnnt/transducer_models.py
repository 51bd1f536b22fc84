"""Tiny transducer models for the component, loss and search tests."""
from __future__ import annotations

from typing import Any

from speechforge.builder import build_model

V = 10


def transducer_config(predictor: dict[str, Any], losses: list[dict[str, Any]] | None = None, **decoder: Any) -> dict[str, Any]:
    return {
        "vocab_size": V,
        "frontend": {"type": "fbank", "num_mel_bins": 20},
        "encoder": {"type": "conformer", "d_model": 16, "heads": 2, "num_blocks": 1, "ffn": {"type": "dense", "hidden": 24}},
        "decoder": {"type": "transducer", "predictor": predictor, "joiner": {"type": "linear", "dim": 12}, **decoder},
        "losses": losses or [{"type": "rnnt", "backend": "native"}],
    }


PREDICTORS = {
    "lstm": {"type": "lstm", "layers": 2, "hidden": 12, "projection": 8, "dropout": 0.0},
    "stateless": {"type": "stateless", "dim": 8, "context_size": 2},
}


def transducer_model(predictor: str = "lstm", **decoder: Any):
    return build_model(transducer_config(PREDICTORS[predictor], **decoder))
