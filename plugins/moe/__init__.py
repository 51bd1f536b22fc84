"""MoE-FFN plugin (U2++ MoE): the ``moe`` feed-forward, the ``moe_aux`` loss, expert-load
reporting after each training step and the expert-load section of ``report.md``."""
from speechforge_plugins.moe.plugin import after_train_step, register_components, report_sections

__all__ = ["after_train_step", "register_components", "report_sections"]
