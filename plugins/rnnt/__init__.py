"""RNN-T plugin, computational core so far: the full transducer loss (native and torchaudio
backends) and k2's pruned RNN-T loss written in PyTorch (simple loss, prune ranges, pruned loss),
with an optional backend on the real k2 and icefall's warm-up of the two losses' weights.
Components, searches and configs come next (docs/plugins/rnnt.md)."""
