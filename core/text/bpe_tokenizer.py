"""SentencePiece BPE tokenizer (Sennrich et al., 2016; Kudo & Richardson, 2018)."""
from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

from speechforge.config import atomic_write_text
from speechforge.errors import ConfigError
from speechforge.text.tokenizer import BLANK, SOS_EOS, UNK, Tokenizer


class BPETokenizer(Tokenizer):
    """SentencePiece pieces at ids 0 .. V-2 (<blank> as piece 0, <unk> as 1) plus <sos/eos>."""

    kind = "bpe"

    def __init__(self, model_proto: bytes) -> None:
        self.model_proto = model_proto
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> BPETokenizer:
        """Train on transcripts; ``vocab_size`` counts every id the model outputs."""
        if vocab_size < 4:
            raise ConfigError(f"tokenizer.vocab_size: at least 4, got {vocab_size}")
        model = io.BytesIO()
        sentences = [t for t in texts if t.strip()]
        if not sentences:
            raise ConfigError("tokenizer: no non-empty transcripts to train on")
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(sentences),
                model_writer=model,
                vocab_size=vocab_size - 1,
                model_type="bpe",
                character_coverage=1.0,
                pad_id=0,
                pad_piece=BLANK,
                unk_id=1,
                unk_piece=UNK,
                bos_id=-1,
                eos_id=-1,
                num_threads=1,
                minloglevel=2,
            )
        except RuntimeError as error:
            raise ConfigError(f"tokenizer.vocab_size: sentencepiece cannot train {vocab_size}: {error}") from error
        return cls(model.getvalue())

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size() + 1

    @property
    def pieces(self) -> list[str]:
        return [self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())] + [SOS_EOS]

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode([i for i in ids if 0 < i < self.vocab_size - 1])

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / ".bpe.model.tmp"
        tmp.write_bytes(self.model_proto)
        tmp.replace(directory / "bpe.model")
        atomic_write_text(directory / "tokenizer.json", json.dumps({"type": self.kind, "vocab_size": self.vocab_size}))

    @classmethod
    def load(cls, directory: Path) -> BPETokenizer:
        return cls((directory / "bpe.model").read_bytes())
