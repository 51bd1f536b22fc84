"""``train.init_from``: start a run from another model's weights (fine-tuning a pretrained
encoder, quantization-aware training from a float model, a bigger model from a smaller one's
encoder), selected by globs and renamed by prefix."""
from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from speechforge.decode.recognizer import find_checkpoint
from speechforge.errors import CheckpointError, ConfigError
from speechforge.train.checkpoint import load_checkpoint
from speechforge.train.options import InitFromOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InitReport:
    """What ``init_from`` did, in tensors."""

    source: Path
    loaded: int  # copied into the model
    excluded: int  # of the checkpoint, not selected by include/exclude
    unmatched: int  # of the checkpoint, selected but with no tensor of that name in the model
    new: int  # of the model, left as initialized


def resolve_checkpoint(checkpoint: str) -> Path:
    """A ``.pt`` file as it is; an experiment dir means its ``model_avg.pt``, else
    ``checkpoints/latest`` (as ``speechforge.load`` does)."""
    path = Path(checkpoint)
    if path.is_dir():
        return find_checkpoint(path)
    if not path.is_file():
        raise CheckpointError(f"train.init_from.checkpoint: {path}: no such file or experiment dir")
    return path


def renamed(name: str, rename: dict[str, str]) -> str:
    """``name`` with the first matching prefix of ``rename`` replaced."""
    for old, new in rename.items():
        if name.startswith(old):
            return new + name[len(old):]
    return name


def init_from(model: nn.Module, options: InitFromOptions) -> InitReport:
    """Copy the selected, renamed tensors of ``options.checkpoint`` into ``model``.

    Raises a CheckpointError naming the key and both shapes when a tensor does not fit, and a
    ConfigError when nothing at all would load (a wrong prefix or glob).
    """
    if not options.checkpoint:
        raise ConfigError("train.init_from.checkpoint: missing; an experiment dir or a checkpoint file")
    source = resolve_checkpoint(options.checkpoint)
    weights = load_checkpoint(source)["model"]
    own = model.state_dict()
    selected = {
        name: tensor
        for name, tensor in weights.items()
        if any(fnmatch.fnmatchcase(name, g) for g in options.include)
        and not any(fnmatch.fnmatchcase(name, g) for g in options.exclude)
    }
    updates = {}
    for name, tensor in selected.items():
        target = renamed(name, options.rename)
        if target not in own:
            continue
        if own[target].shape != tensor.shape:
            raise CheckpointError(
                f"train.init_from: {source}: {name} has shape {tuple(tensor.shape)}, "
                f"the model's {target} {tuple(own[target].shape)}"
            )
        updates[target] = tensor
    if not updates:
        raise ConfigError(
            f"train.init_from: no tensor of {source} fits the model (include {options.include}, "
            f"exclude {options.exclude}, rename {options.rename}); e.g. {next(iter(weights), 'none')}"
        )
    model.load_state_dict(updates, strict=False)
    report = InitReport(source, len(updates), len(weights) - len(selected), len(selected) - len(updates), len(own) - len(updates))
    log.info(
        "init_from %s: %d tensors loaded, %d excluded, %d not in the model, %d left new",
        source, report.loaded, report.excluded, report.unmatched, report.new,
    )
    return report
