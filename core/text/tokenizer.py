"""The tokenizer contract and loading a saved tokenizer by its type."""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path

from speechforge.errors import ConfigError

BLANK = "<blank>"
UNK = "<unk>"
SOS_EOS = "<sos/eos>"


class Tokenizer(ABC):
    """Text <-> token ids. Id 0 is <blank>, 1 is <unk>, ``vocab_size - 1`` is <sos/eos>."""

    kind: str

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @property
    @abstractmethod
    def pieces(self) -> list[str]:
        """The unit of every id, ``pieces[i]`` for id i (language models name tokens by them)."""

    @abstractmethod
    def encode(self, text: str) -> list[int]: ...

    @abstractmethod
    def decode(self, ids: list[int]) -> str:
        """Ids to text; blank and <sos/eos> are dropped."""

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write the tokenizer's files and ``tokenizer.json`` into ``directory``."""


def load_tokenizer(directory: Path) -> Tokenizer:
    """Load what :meth:`Tokenizer.save` wrote."""
    from speechforge.text.bpe_tokenizer import BPETokenizer
    from speechforge.text.char_tokenizer import CharTokenizer

    meta_path = Path(directory) / "tokenizer.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"{meta_path}: cannot read tokenizer description: {error}") from error
    kinds = {"bpe": BPETokenizer, "char": CharTokenizer}
    if meta.get("type") not in kinds:
        raise ConfigError(f"{meta_path}: unknown tokenizer type {meta.get('type')!r}; known: {', '.join(kinds)}")
    try:
        return kinds[meta["type"]].load(Path(directory))
    except OSError as error:  # tokenizer.json is there, the units or model file it needs is not
        raise ConfigError(f"{error.filename or directory}: cannot read the {meta['type']} tokenizer's file: {error.strerror or error}") from error
