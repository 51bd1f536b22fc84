"""S3LSpeech plugin: a layer-table encoder (conv1d, attention on FlashAttention, projections,
Mamba), the ``ssl`` student/EMA-teacher contrastive pretraining task, and the
``ssl_pretrained`` encoder that fine-tunes on a softmax-weighted sum of the student's layers."""
from speechforge_plugins.s3lspeech.plugin import after_train_step, before_train_step, register_components

__all__ = ["after_train_step", "before_train_step", "register_components"]
