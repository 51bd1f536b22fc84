"""The Mamba plugin's hook: the ``mamba`` encoder block."""
from __future__ import annotations

from speechforge.hookspecs import hookimpl
from speechforge.registry import ComponentRegistry
from speechforge_plugins.mamba.mamba_block import MambaBlock


@hookimpl
def register_components(registry: ComponentRegistry) -> None:
    registry.register("encoder_block", "mamba", MambaBlock)
