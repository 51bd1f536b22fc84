"""Utterances → (waveform, token ids), skipping bad items instead of crashing mid-epoch."""
from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torchaudio
from torch.utils.data import Dataset

from speechforge.data.audio import load_audio
from speechforge.data.data_dir import Utterance
from speechforge.errors import DataError
from speechforge.text.tokenizer import Tokenizer

log = logging.getLogger(__name__)


@dataclass
class Example:
    utt_id: str
    speech: torch.Tensor  # (S,)
    tokens: list[int] | None  # None without a tokenizer (a task that needs no transcripts)


@dataclass
class Skipped:
    utt_id: str
    reason: str


class SkipCounter:
    """Counts skipped utterances by reason and logs the first few ids of each reason."""

    def __init__(self, show: int = 3) -> None:
        self.show = show
        self.counts: Counter[str] = Counter()

    def add(self, skipped: Skipped) -> None:
        self.counts[skipped.reason] += 1
        if self.counts[skipped.reason] <= self.show:
            log.warning("skipping %s: %s", skipped.utt_id, skipped.reason)

    def total(self) -> int:
        return sum(self.counts.values())


def filter_utterances(
    utterances: Sequence[Utterance], max_duration: float, min_duration: float, counter: SkipCounter, transcripts: bool = True
) -> list[Utterance]:
    """Drop what is known bad before reading audio: empty transcripts (when ``transcripts``
    are needed), too long or short."""
    kept = []
    for utt in utterances:
        if transcripts and not utt.text.strip():
            counter.add(Skipped(utt.utt_id, "empty transcript"))
        elif utt.duration > max_duration:
            counter.add(Skipped(utt.utt_id, f"longer than {max_duration} s"))
        elif utt.duration < min_duration:
            counter.add(Skipped(utt.utt_id, f"shorter than {min_duration} s"))
        else:
            kept.append(utt)
    return kept


class SpeechDataset(Dataset):
    """Reads audio on demand. Speed perturbation, when enabled, draws its factor from a
    generator seeded by (seed, epoch, index), so resumed runs see the same data. Without a
    ``tokenizer`` the examples carry audio only."""

    def __init__(
        self,
        utterances: Sequence[Utterance],
        tokenizer: Tokenizer | None,
        sample_rate: int,
        speed_perturb: Sequence[float] = (),
        seed: int = 0,
    ) -> None:
        self.utterances = list(utterances)
        self.tokenizer = tokenizer
        self.sample_rate = sample_rate
        self.speed_perturb = list(speed_perturb)
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> Example | Skipped:
        utt = self.utterances[index]
        try:
            speech = load_audio(utt.audio, self.sample_rate)
        except DataError as error:
            return Skipped(utt.utt_id, str(error))
        tokens = self.tokenizer.encode(utt.text) if self.tokenizer is not None else None
        if tokens is not None and not tokens:
            return Skipped(utt.utt_id, "transcript has no tokens")
        if self.speed_perturb:
            factor = random.Random(hash((self.seed, self.epoch, index))).choice(self.speed_perturb)
            if factor != 1.0:
                # resampling to rate/factor then reading at rate plays it factor times faster
                speech = torchaudio.functional.resample(speech, int(self.sample_rate * factor), self.sample_rate)
        return Example(utt.utt_id, speech, tokens)


@dataclass
class Batch:
    utt_ids: list[str]
    speech: torch.Tensor  # (B, S)
    speech_lens: torch.Tensor  # (B,)
    targets: torch.Tensor | None  # (B, U), padded with -1; None for untranscribed audio
    target_lens: torch.Tensor | None  # (B,)
    skipped: list[Skipped]

    def model_inputs(self, device: torch.device) -> dict[str, torch.Tensor]:
        """The task's ``batch``: ``speech``, ``speech_lens`` and, when transcribed,
        ``targets`` and ``target_lens``."""
        inputs = {"speech": self.speech.to(device), "speech_lens": self.speech_lens.to(device)}
        if self.targets is not None and self.target_lens is not None:
            inputs.update(targets=self.targets.to(device), target_lens=self.target_lens.to(device))
        return inputs


def collate(items: Sequence[Example | Skipped]) -> Batch:
    """Pad a list of examples; skipped items travel along to be counted. Examples without
    tokens give a batch without targets."""
    examples = [i for i in items if isinstance(i, Example)]
    skipped = [i for i in items if isinstance(i, Skipped)]
    speech = torch.nn.utils.rnn.pad_sequence([e.speech for e in examples], batch_first=True) if examples else torch.zeros(0, 0)
    speech_lens = torch.tensor([e.speech.numel() for e in examples], dtype=torch.long)
    if any(e.tokens is None for e in examples):
        return Batch([e.utt_id for e in examples], speech, speech_lens, None, None, skipped)
    targets = (
        torch.nn.utils.rnn.pad_sequence([torch.tensor(e.tokens) for e in examples], batch_first=True, padding_value=-1)
        if examples
        else torch.zeros(0, 0, dtype=torch.long)
    )
    target_lens = torch.tensor([len(e.tokens) for e in examples], dtype=torch.long)
    return Batch([e.utt_id for e in examples], speech, speech_lens, targets, target_lens, skipped)
