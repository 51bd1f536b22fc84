"""The S3LSpeech plugin's hooks: the ``layer_table`` and ``ssl_pretrained`` encoders and the
``ssl`` task; the teacher's EMA update after each optimizer step and the fine-tuning freeze
following the run's progress."""
from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from speechforge.hookspecs import hookimpl
from speechforge.interfaces import Progress
from speechforge.registry import ComponentRegistry
from speechforge_plugins.s3lspeech.layer_table_encoder import LayerTableEncoder
from speechforge_plugins.s3lspeech.pretrained_encoder import SSLPretrainedEncoder
from speechforge_plugins.s3lspeech.ssl_task import SSLTask


@hookimpl
def register_components(registry: ComponentRegistry) -> None:
    registry.register("encoder", "layer_table", LayerTableEncoder)
    registry.register("encoder", "ssl_pretrained", SSLPretrainedEncoder)
    registry.register("task", "ssl", SSLTask)


@hookimpl
def before_train_step(model: nn.Module, step: int, progress: Progress) -> None:
    for module in model.modules():
        if isinstance(module, SSLPretrainedEncoder):
            module.follow(progress)


@hookimpl
def after_train_step(model: nn.Module, step: int, losses: Mapping[str, float], progress: Progress) -> Mapping[str, float] | None:
    if isinstance(model, SSLTask):
        return {"ema_momentum": model.update_teacher(progress)}
    return None
