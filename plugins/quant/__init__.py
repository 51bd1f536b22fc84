"""Quantization plugin (USM RNN-T binarization, Rybakov et al.): the per-weight fake quantizers
(absmean binarization and min/max asymmetric n-bit, with sub-channel blocks and int8 double
quantization of their metadata), bit packing, the packed linear layer that runs on packed
weights, and the size arithmetic of the paper's Table 2.

The model-level ``quantizer`` (``prepare`` / ``export``), its config section and the CLI are
not wired yet; see docs/plugins/quant.md.
"""
