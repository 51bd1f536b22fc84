"""Building a model without allocating its parameters: they are made on the meta device.

``speechforge.load`` of a packed export builds the model's float structure this way and fills
it with ``load_state_dict(..., assign=True)``, so float weights that the packed layers replace
never exist in memory; the size report counts a 900M-parameter model the same way. Buffers
(the fbank frontend's window and filterbank, computed at construction) stay real, unlike
under ``with torch.device("meta")``: a module that checks or derives values at construction
still can.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Inside it every ``register_parameter`` (so every ``self.w = nn.Parameter(...)``) puts the
    parameter on the meta device; initialisers then run on meta tensors and cost nothing.

    It patches ``nn.Module.register_parameter`` for the whole process while it is open: use it
    around a build, not around code that other threads run at the same time.
    """
    register = nn.Module.register_parameter

    def register_on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and param.device.type != "meta":
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register(module, name, param)

    nn.Module.register_parameter = register_on_meta  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = register  # type: ignore[method-assign]
