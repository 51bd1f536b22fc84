"""MoE-FFN plugin (U2++ MoE): the ``moe`` feed-forward, the ``moe_aux`` loss and expert-load
reporting after each training step."""
from speechforge_plugins.moe.plugin import after_train_step, register_components

__all__ = ["after_train_step", "register_components"]
