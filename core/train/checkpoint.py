"""Checkpoints: written atomically, loaded with ``weights_only=True``, averaged."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from speechforge.errors import CheckpointError

#: The entry that marks an exported model whose ``model`` is a quantizer's packed state dict.
PACKED = "packed"
#: The entries speechforge itself writes; any other entry of a checkpoint is a plugin's
#: (``checkpoint_save``) and is carried into averaged and exported models.
CORE_ENTRIES = ("model", "optimizer", "scheduler", "scaler", "progress", "rng", "averaged", PACKED)


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over ``path``:
    a crash leaves either the old file or the new one, never half of one. A write that fails
    (a full disk) removes the temporary file and raises CheckpointError naming ``path``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise CheckpointError(f"{path}: cannot write the checkpoint ({error.strerror or error})") from error
    try:
        os.fchmod(fd, 0o644)  # mkstemp creates 0600; models are shared and shipped (export)
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError) or (isinstance(error, RuntimeError) and "write" in str(error)):
            # a full disk: torch.save reports it as an OSError or as its own RuntimeError
            raise CheckpointError(f"{path}: cannot write the checkpoint ({error}); what was there before is kept") from error
        raise


def load_checkpoint(path: Path, *, mmap: bool = False) -> dict[str, Any]:
    """Load on CPU with ``weights_only=True``; a missing or corrupted file names itself.
    ``mmap``: tensors map the file instead of being read into memory (pages load as used)."""
    if not Path(path).is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"{path}: corrupted or not a speechforge checkpoint ({type(error).__name__}: {error})") from error
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a speechforge checkpoint (no 'model' entry)")
    return state


def plugin_entries(state: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``state`` that ``checkpoint_save`` hooks added."""
    return {k: v for k, v in state.items() if k not in CORE_ENTRIES}


def shape_mismatches(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], limit: int = 3) -> list[str]:
    """``key: SHAPE_A vs SHAPE_B`` for the first ``limit`` keys both hold with other shapes."""
    return [
        f"{key}: {tuple(found[key].shape)} vs {tuple(value.shape)}"
        for key, value in expected.items()
        if key in found and tuple(found[key].shape) != tuple(value.shape)
    ][:limit]


def load_model_weights(
    model: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: Path, *, assign: bool = False
) -> None:
    """``load_state_dict`` whose error names the checkpoint and the mismatching keys (with
    both shapes when the checkpoint is of another vocabulary or width). ``assign``: the
    model's tensors become the checkpoint's (a model built on the meta device)."""
    try:
        result = model.load_state_dict(state_dict, strict=False, assign=assign)
    except RuntimeError as error:  # size mismatches; load-time hooks may have renamed the keys
        mismatched = shape_mismatches(model.state_dict(), state_dict) or [str(error).splitlines()[-1].strip()]
        raise CheckpointError(
            f"{source}: a model of another shape (checkpoint vs model): {'; '.join(mismatched)}"
        ) from error
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{source}: does not fit the model: missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
        )


def average_checkpoints(paths: Sequence[Path]) -> dict[str, torch.Tensor]:
    """Element-wise mean of the models' floating-point tensors; integer buffers (BatchNorm's
    ``num_batches_tracked``) are taken from the last checkpoint."""
    if not paths:
        raise CheckpointError("no checkpoints to average")
    total: dict[str, torch.Tensor] = {}
    first: dict[str, torch.Tensor] = {}
    for path in paths:
        model = load_checkpoint(path)["model"]
        first = first or model
        if model.keys() != first.keys() or shape_mismatches(model, first):
            differences = shape_mismatches(model, first) or [f"keys differ: {sorted(set(model) ^ set(first))[:3]}"]
            raise CheckpointError(f"{path}: not the model of {paths[0]} ({paths[0].name} vs this): {'; '.join(differences)}")
        for key, value in model.items():
            if value.is_floating_point():
                total[key] = total[key] + value.double() if key in total else value.double()
            else:
                total[key] = value
    return {k: (v / len(paths)).to(torch.float32) if v.is_floating_point() else v for k, v in total.items()}
