"""Which weights a quantizer quantizes: glob patterns over module names, or the paper's default.

A module is quantizable when it is an ``nn.Linear`` (its ``weight``, (O, I)) or declares
``quantizable_weights``, the names of its own stacked (..., O, I) weights (the MoE plugin's
expert banks, (E, O, I)). The default follows Rybakov et al. (section 3): every quantizable
module of the encoder (the FFNs, the attention projections ``linear_qkv``/``linear_out``/
``linear_pos``, the convolution module's pointwise layers, MoE expert banks), except the
subsampling (its output projection included) and the linear layers inside a module that
declares its own ``quantizable_weights`` (an expert bank's router). Depthwise convolutions,
embeddings, the predictor, the joiner and the heads are not linear layers of the encoder, so
they stay float.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn
from torch.nn.utils import parametrize

from speechforge.errors import ConfigError
from speechforge.modules.subsampling import Conv2dSubsampling

ENCODER = "encoder"


@dataclass(frozen=True)
class QuantTarget:
    """One quantizable module.

    Attributes:
        name: its module name, e.g. ``encoder.blocks.0.feed_forward.w_1``.
        module: the module.
        weights: its parameter names to quantize, each (..., O, I): ``("weight",)`` for a linear.
    """

    name: str
    module: nn.Module
    weights: tuple[str, ...]

    def weight_name(self, weight: str) -> str:
        """The name errors and reports use, and where the packed export puts the weight's packed
        form: the module's for a linear's ``weight`` (the layer is swapped whole), else
        ``module.weight`` (``encoder.blocks.0.feed_forward.w_1`` of an expert bank)."""
        return self.name if isinstance(self.module, nn.Linear) and weight == "weight" else f"{self.name}.{weight}"


def quantizable_weights(module: nn.Module) -> tuple[str, ...]:
    """The weights of ``module`` a quantizer may quantize (none for most modules)."""
    if isinstance(module, nn.Linear):
        return ("weight",)
    names = getattr(module, "quantizable_weights", ())
    # a parametrized weight is present without computing it (a whole fake-quantized bank)
    return tuple(
        name for name in names if parametrize.is_parametrized(module, name) or getattr(module, name, None) is not None
    )


def quantizable_modules(model: nn.Module) -> list[QuantTarget]:
    """Every quantizable module of ``model``, in module order."""
    return [
        QuantTarget(name, module, weights)
        for name, module in model.named_modules()
        if name and (weights := quantizable_weights(module))
    ]


def select_targets(model: nn.Module, patterns: Sequence[str] | None, key: str = "quantizer.targets") -> list[QuantTarget]:
    """The targets ``patterns`` (globs over module names, ``fnmatch`` rules: ``*`` also
    crosses dots) select among the quantizable modules, in module order; None: the paper's
    default (:func:`paper_targets`). A pattern that selects nothing is a ConfigError naming it."""
    candidates = quantizable_modules(model)
    if patterns is None:
        chosen = paper_targets(model, candidates)
        if not chosen:
            raise ConfigError(
                f"{key}: the default (the encoder's linear layers and expert banks) finds none in this "
                f"model; give glob patterns over module names"
            )
        return chosen
    if isinstance(patterns, str) or not patterns:
        raise ConfigError(f"{key}: expected a non-empty list of glob patterns, got {patterns!r}")
    selected: set[str] = set()
    for i, pattern in enumerate(patterns):
        hits = [t.name for t in candidates if fnmatch.fnmatchcase(t.name, pattern)]
        if not hits:
            example = candidates[0].name if candidates else "none"
            raise ConfigError(
                f"{key}.{i}: {pattern!r} matches no linear layer or expert bank of the model "
                f"(quantizable modules are named like {example})"
            )
        selected.update(hits)
    return [t for t in candidates if t.name in selected]


def paper_targets(model: nn.Module, candidates: list[QuantTarget]) -> list[QuantTarget]:
    """The encoder's quantizable modules outside its subsampling and outside modules that
    declare their own ``quantizable_weights``."""
    excluded = [
        f"{name}."
        for name, module in model.named_modules()
        if isinstance(module, Conv2dSubsampling) or (not isinstance(module, nn.Linear) and quantizable_weights(module))
    ]
    return [
        t for t in candidates
        if t.name.startswith(f"{ENCODER}.") and not any(t.name.startswith(prefix) for prefix in excluded)
    ]
