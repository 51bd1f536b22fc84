"""The contract of an ONNX layout that ``speechforge export --format onnx`` writes: core's WeNet
CTC layout, or one a plugin offers for the models it knows (``onnx_exporter`` hook)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from torch import nn


class OnnxExporter(ABC):
    """One runtime's model layout: the checks a model must pass, made before anything is
    written, and the files it is written as.

    Attributes:
        layout: the layout's name, for logs and errors (``"WeNet CTC"``).
    """

    layout: str

    @abstractmethod
    def check(self, model: nn.Module) -> None:
        """Raises: ConfigError, one line saying why and what to change, when ``model`` cannot
        be written in this layout. Writes nothing."""

    @abstractmethod
    def export(self, model: nn.Module, pieces: Sequence[str], out_dir: Path, *, int8: bool) -> list[Path]:
        """Write ``model`` into ``out_dir`` (created).

        Args:
            model: the model, checked by :meth:`check`; put in eval mode.
            pieces: the tokenizer's pieces, index = token id.
            out_dir: the export directory.
            int8: also write int8 copies of the graphs.
        Returns: the paths written.
        Raises: ConfigError for a model :meth:`check` refuses, or a graph that does not
            follow its input's shape.
        """
