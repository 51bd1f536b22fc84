"""speechforge-plugin-example: the ``gated`` FFN and the ``gate`` kind it builds its gate from.

A worked example of a third-party plugin (see docs/writing_plugins.md): one component of a core
kind (``ffn``) and a kind of the plugin's own (``gate``), reached through the FFN's config::

    encoder:
      ffn: {type: gated, hidden: 384, gate: {type: gelu, approximate: tanh}}
"""
from __future__ import annotations

import speechforge
from speechforge.registry import ComponentRegistry

from speechforge_plugin_example.ffn import GatedFeedForward
from speechforge_plugin_example.gate import GeluGate, Gate, SigmoidGate, SwishGate


@speechforge.hookimpl
def register_components(registry: ComponentRegistry) -> None:
    registry.add_kind("gate", Gate, "the gate nonlinearity of a gated FFN")
    registry.register("gate", "sigmoid", SigmoidGate)
    registry.register("gate", "swish", SwishGate)
    registry.register("gate", "gelu", GeluGate)
    registry.register("ffn", "gated", GatedFeedForward)
