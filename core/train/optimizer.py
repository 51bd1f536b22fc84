"""The ``optim`` section as a torch optimizer: ``adamw``, ``adam`` or ``adafactor``."""
from __future__ import annotations

from collections.abc import Iterable

import torch

from speechforge.errors import ConfigError
from speechforge.train.options import OptimOptions

KINDS = ("adamw", "adam", "adafactor")


def make_optimizer(opts: OptimOptions, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """``adamw`` / ``adam`` with ``lr``, ``betas``, ``eps``, ``weight_decay``; ``adafactor``
    (torch's ``Adafactor``, Shazeer & Stern 2018: factored second moments, the USM RNN-T's
    optimizer, memory sublinear in the parameters) with ``lr`` and ``weight_decay``, keeping
    torch's ``beta2_decay`` and ``eps``; Adam's ``betas`` / ``eps`` set with it are refused
    rather than ignored."""
    if opts.type == "adafactor":
        defaults = OptimOptions()
        if list(opts.betas) != defaults.betas or opts.eps != defaults.eps:
            raise ConfigError("optim.betas, optim.eps: keys of adam/adamw; adafactor keeps torch's beta2_decay and eps")
        return torch.optim.Adafactor(parameters, lr=opts.lr, weight_decay=opts.weight_decay)
    if opts.type == "adamw":
        return torch.optim.AdamW(parameters, lr=opts.lr, betas=tuple(opts.betas), eps=opts.eps, weight_decay=opts.weight_decay)
    if opts.type == "adam":
        return torch.optim.Adam(parameters, lr=opts.lr, betas=tuple(opts.betas), eps=opts.eps, weight_decay=opts.weight_decay)
    raise ConfigError(f"optim.type: one of {', '.join(KINDS)}, got {opts.type!r}")
