"""FlashAttention plugin (S3LSpeech's attention layers): the ``flash`` attention component,
on flash-attn kernels on CUDA and PyTorch SDPA elsewhere."""
from speechforge_plugins.flash_attention.plugin import register_components

__all__ = ["register_components"]
