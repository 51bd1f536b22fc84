"""Mamba plugin (S3LSpeech's ablation): the ``mamba`` encoder block, on mamba-ssm's selective
scan kernel on CUDA and a chunked PyTorch scan elsewhere."""
from speechforge_plugins.mamba.plugin import register_components

__all__ = ["register_components"]
