"""``speechforge.load(exp_dir)``: a trained experiment (or an exported one) as a ready
recognizer."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from speechforge.builder import build_model
from speechforge.config import load_config
from speechforge.data.audio import load_audio
from speechforge.decode.search_options import check_configured_methods, read_decode_options, search_options
from speechforge.errors import CheckpointError, ConfigError, DataError
from speechforge.interfaces import SearchMethod
from speechforge.lm.ngram_lm import NgramLM
from speechforge.modules.inference_transform import optimize_for_cpu_inference
from speechforge.plugins import PluginHost, default_host
from speechforge.text.tokenizer import load_tokenizer
from speechforge.train.checkpoint import PACKED, load_checkpoint, load_model_weights

AVERAGED = "model_avg.pt"
EXPORTED = "model.pt"
LM_FILE = "lm/lm.arpa"


def find_checkpoint(exp_dir: Path) -> Path:
    """The averaged model when there is one, else the newest checkpoint, else the model of an
    export dir (``speechforge export``'s ``model.pt``)."""
    averaged = exp_dir / AVERAGED
    if averaged.is_file():
        return averaged
    pointer = exp_dir / "checkpoints" / "latest"
    if pointer.is_file():
        return exp_dir / "checkpoints" / pointer.read_text().strip()
    if (exp_dir / EXPORTED).is_file():
        return exp_dir / EXPORTED
    raise CheckpointError(f"{exp_dir}: no {AVERAGED} and no checkpoints/latest (nor an exported {EXPORTED}); train first")


def without_cmvn_file(config: dict) -> dict:
    """The checkpoint carries the CMVN buffers, so the stats file need not exist any more."""
    frontend = {k: v for k, v in (config.get("frontend") or {"type": "fbank"}).items() if k != "cmvn_stats"}
    return {**config, "frontend": frontend}


class Recognizer:
    """Model + tokenizer + decoding methods of one experiment or export dir. A method left
    unnamed is the config's first ``decode.methods`` entry; searches get the config's options
    for them (``decode.beam_size``, ``decode.options.METHOD``) under any given as keywords.

    A packed export (a quantized experiment's ``speechforge export``) is built in its packed
    form (:func:`~speechforge.builder.build_model` with ``packed=True``) and filled from the
    memory-mapped file by assignment, so its float weights never exist in memory."""

    def __init__(
        self,
        exp_dir: Path,
        checkpoint: Path | None = None,
        host: PluginHost | None = None,
        *,
        cpu_inference: bool = True,
    ) -> None:
        """``cpu_inference``: swap the model's plain layers for their CPU inference forms
        (:func:`~speechforge.modules.inference_transform.optimize_for_cpu_inference`); False
        keeps the model as built, e.g. to export it."""
        self.exp_dir = Path(exp_dir)
        self.host = host or default_host()
        self.config = without_cmvn_file(load_config(self.exp_dir / "config.yaml"))
        self.tokenizer = load_tokenizer(self.exp_dir / "tokenizer")
        self.checkpoint = checkpoint or find_checkpoint(self.exp_dir)
        state = load_checkpoint(self.checkpoint, mmap=True)
        packed = bool(state.get(PACKED))
        self.model = build_model(self.config, self.host, packed=packed).eval()
        load_model_weights(self.model, state["model"], self.checkpoint, assign=packed)
        self.host.hook.checkpoint_load(state=state, model=self.model)
        if cpu_inference:  # this model only runs inference; swapped layers are left alone
            self.model = optimize_for_cpu_inference(self.model, inplace=True)
        self.sample_rate = int(self.model.frontend.sample_rate)
        lm_path = self.exp_dir / LM_FILE
        self.lm = NgramLM.load_arpa(lm_path, self.tokenizer.pieces) if lm_path.is_file() else None
        self._searches: dict[str, SearchMethod] = {}
        self.decode_options = read_decode_options(self.config)
        check_configured_methods(self.host.registry, self.decode_options)

    @property
    def default_method(self) -> str:
        """The config's first ``decode.methods`` entry, so a model without CTC (whose config
        lists, say, ``attention`` first) decodes out of the box."""
        if not self.decode_options.methods:
            raise ConfigError(
                f"{self.exp_dir / 'config.yaml'}: decode.methods is empty; name the searches to run "
                f"(registered: {', '.join(self.host.registry.names('search'))})"
            )
        return self.decode_options.methods[0]

    def search_options(self, method: str, **overrides: object) -> dict[str, object]:
        """The config's options for ``method`` with ``overrides`` over them."""
        return search_options(self.host.registry, self.decode_options, method, overrides)

    def search(self, method: str, **options: object) -> SearchMethod:
        """The registered decoding method ``method``, built with exactly ``options`` (cached;
        keys checked as ``decode.options.METHOD.key``); methods that declare an ``lm``
        parameter get the experiment's language model."""
        key = f"{method}:{sorted(options.items())}"
        if key not in self._searches:
            self._searches[key] = self.host.registry.build(
                "search", {"type": method, **options}, f"decode.options.{method}", lm=self.lm
            )
        return self._searches[key]

    @torch.no_grad()
    def encode(
        self, speech: Tensor, speech_lens: Tensor, chunk_size: int = -1, num_left_chunks: int = -1
    ) -> tuple[Tensor, Tensor]:
        """Args: speech (B, S), speech_lens (B,). Returns encoder_out (B, T, D), encoder_lens
        (B,): what every search of the batch reads, so several methods share one encoding."""
        return self.model.encode(speech, speech_lens, chunk_size, num_left_chunks)

    @torch.no_grad()
    def texts(self, search: SearchMethod, encoder_out: Tensor, encoder_lens: Tensor) -> list[str]:
        """Args: encoder_out (B, T, D), encoder_lens (B,). Returns ``search``'s text per utterance."""
        return [self.tokenizer.decode(ids) for ids in search(self.model, encoder_out, encoder_lens)]

    def decode_batch(
        self,
        speech: Tensor,
        speech_lens: Tensor,
        method: str | None = None,
        chunk_size: int = -1,
        num_left_chunks: int = -1,
        **options: object,
    ) -> list[str]:
        """Args: speech (B, S), speech_lens (B,); method: default :attr:`default_method`.
        Returns one text per utterance."""
        method = method or self.default_method
        search = self.search(method, **self.search_options(method, **options))
        return self.texts(search, *self.encode(speech, speech_lens, chunk_size, num_left_chunks))

    def transcribe(self, audio: str | Path | Tensor | Sequence[float], method: str | None = None, **options: object) -> str:
        """Text of one utterance: a file path or a waveform at the model's sample rate;
        method: default :attr:`default_method`."""
        if isinstance(audio, (str, Path)):
            wave = load_audio(audio, self.sample_rate)
        else:
            wave = torch.as_tensor(audio, dtype=torch.float32).flatten()
        limit = self.decode_options.max_utterance_seconds
        if limit and wave.numel() > limit * self.sample_rate:
            raise DataError(
                f"{audio if isinstance(audio, (str, Path)) else 'the waveform'}: {wave.numel() / self.sample_rate:.1f} s, longer than "
                f"decode.max_utterance_seconds ({limit:g} s); split it, or raise the limit if memory allows"
            )
        return self.decode_batch(wave.unsqueeze(0), torch.tensor([wave.numel()]), method, **options)[0]


def load(exp_dir: str | Path, checkpoint: str | Path | None = None) -> Recognizer:
    """Load a trained experiment or an export dir:
    ``speechforge.load("exp/ctc_conformer_small").transcribe("a.flac")``."""
    return Recognizer(Path(exp_dir), Path(checkpoint) if checkpoint else None)
