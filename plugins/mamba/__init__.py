"""Mamba plugin (S3LSpeech's ablation): the ``mamba`` encoder block, on mamba-ssm's selective
scan kernel on CUDA, a fused C kernel on CPU (compiled on first use), and a chunked PyTorch
scan where neither is to be had."""
from speechforge_plugins.mamba.plugin import register_components

__all__ = ["register_components"]
