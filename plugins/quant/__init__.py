"""Quantization plugin (USM RNN-T binarization, Rybakov et al.): the ``absmean_binary`` and
``minmax`` quantizers chosen by the config's ``quantizer:`` section (fake quantization of the
target weights during training, with sub-channel blocks and int8 double quantization of their
metadata), the packed export that ``speechforge.load`` runs block by block on packed weights,
and ``speechforge quant-report``, the size arithmetic of the paper's Table 2
(docs/plugins/quant.md)."""
from speechforge_plugins.quant.plugin import add_commands, register_components, report_sections

__all__ = ["add_commands", "register_components", "report_sections"]
