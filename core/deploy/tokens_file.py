"""``tokens.txt`` as sherpa-onnx reads it: one ``<symbol> <id>`` line per output id, with the
CTC blank spelt ``<blank>`` (how sherpa-onnx finds WeNet models' blank) and ``▁`` for a word
boundary (sherpa-onnx turns a leading ``▁`` into a space)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from speechforge.config import atomic_write_text
from speechforge.errors import ConfigError
from speechforge.text.tokenizer import BLANK


def write_tokens(pieces: Sequence[str], path: Path) -> Path:
    """Write ``pieces`` (index = token id, 0 the blank) to ``path``.

    Raises: ConfigError when id 0 is not the blank or a piece holds whitespace (a line would
    no longer be one symbol and one id).
    """
    if not pieces or pieces[0] != BLANK:
        raise ConfigError(f"tokenizer: id 0 must be {BLANK} for sherpa-onnx, got {pieces[0] if pieces else 'no pieces'!r}")
    for index, piece in enumerate(pieces):
        if not piece or any(c.isspace() for c in piece):
            raise ConfigError(f"tokenizer: piece {index} ({piece!r}) is empty or holds whitespace; tokens.txt cannot hold it")
    atomic_write_text(path, "".join(f"{piece} {index}\n" for index, piece in enumerate(pieces)))
    return path
