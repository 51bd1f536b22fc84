"""Decode one utterance while its audio arrives: features for the new samples only, encoder
chunks carrying the encoder's :class:`~speechforge.interfaces.EncoderState`, and any
:class:`~speechforge.interfaces.StreamingSearch` stepping forward chunk by chunk."""
from __future__ import annotations

import typing

import torch
from torch import Tensor

from speechforge.errors import ConfigError
from speechforge.interfaces import EncoderState, StreamingEncoder, StreamingSearch
from speechforge.registry import Component, ComponentRegistry


def can_stream(component: Component) -> bool:
    """Whether a registered ``search`` builds a :class:`StreamingSearch`, told without building
    it: a class by its bases, a factory function by its return annotation."""
    factory = component.factory
    if isinstance(factory, type):
        return issubclass(factory, StreamingSearch)
    try:
        returned = typing.get_type_hints(factory).get("return")
    except (NameError, TypeError):  # an annotation that does not resolve: not declared
        return False
    return isinstance(returned, type) and issubclass(returned, StreamingSearch)


def streaming_methods(registry: ComponentRegistry) -> list[str]:
    """The registered searches that can stream, sorted."""
    return [name for name in registry.names("search") if can_stream(registry.get("search", name))]


def check_streaming_method(registry: ComponentRegistry, method: str, key: str = "--method") -> str:
    """Returns ``method`` when it is a registered search that streams; else a one-line
    ConfigError naming it and the methods that stream."""
    if not can_stream(registry.get("search", method)):
        raise ConfigError(
            f"{key}: {method} cannot stream; streaming methods: {', '.join(streaming_methods(registry)) or '(none)'}"
        )
    return method


class StreamingDecoder:
    """Feeds ``accept_waveform`` pieces through the frontend and the encoder's
    ``forward_chunk``, one chunk of ``chunk_size`` encoder frames at a time, and steps the
    search over each chunk's encodings, so that :meth:`partial` is the best hypothesis so far.

    ``chunk_size`` follows :mod:`speechforge.interfaces`: N > 0 chunks of N frames, 0 the
    encoder's own static chunk; -1 (full context) cannot stream. Features are computed only
    for the new frames (the frontend's frames are independent windows of ``win_length``
    samples every ``hop_length``, :meth:`window_features`; a frontend whose first frame
    reaches ``start_padding`` samples before the waveform gets them reflected, as it pads a
    whole utterance), so the cost per chunk does not grow with the utterance.
    :meth:`finish` encodes what is left and returns all encodings, for a second pass such as
    attention rescoring; :meth:`final` is the search's own final result.
    """

    def __init__(self, model, search: StreamingSearch, chunk_size: int, num_left_chunks: int = -1) -> None:
        encoder = model.encoder
        if not isinstance(encoder, StreamingEncoder):
            raise ConfigError(f"encoder: {type(encoder).__name__} is no StreamingEncoder, so it cannot stream")
        if not isinstance(search, StreamingSearch):
            raise ConfigError(f"--method: {type(search).__name__} is no StreamingSearch, so it cannot stream")
        if chunk_size == 0:
            chunk_size, num_left_chunks = encoder.resolve_chunk(0, num_left_chunks, 0)
            if chunk_size <= 0:
                raise ConfigError(
                    f"--chunk-size: 0 means the encoder's own chunk, and {type(encoder).__name__} has no static "
                    f"chunk (static_chunk_size); give a chunk of N > 0 frames"
                )
        if chunk_size <= 0:
            raise ConfigError(f"--chunk-size: streaming needs a chunk of at least 1 frame, got {chunk_size}")
        frontend = model.frontend
        if not all(hasattr(frontend, name) for name in ("win_length", "hop_length", "window_features")):
            raise ConfigError(
                f"frontend: {type(frontend).__name__} does not say its window and hop (win_length, hop_length, "
                f"window_features), so it cannot stream"
            )
        self.model = model
        self.search = search
        self.chunk_size = chunk_size
        self.num_left_chunks = num_left_chunks
        self.window = encoder.chunk_window(chunk_size)
        self.reset()

    def reset(self) -> None:
        """Forget everything; the next sample starts a new utterance."""
        self.samples = torch.zeros(0)
        self.sample_start = 0  # absolute index of samples[0]
        self.feats: Tensor | None = None  # (frames, F) not yet consumed by a full window
        self.frames_done = 0  # feature frames computed so far
        self.start_padded = getattr(self.model.frontend, "start_padding", 0) == 0
        self.encoder_state: EncoderState | None = None  # made at the first chunk
        self.search_state = None
        self.encodings: list[Tensor] = []

    @torch.no_grad()
    def accept_waveform(self, samples: Tensor) -> int:
        """Add samples (S,) at the model's rate; encode every chunk now complete.

        Returns: the number of chunks encoded by this call.
        Raises: ConfigError at the first chunk when the encoder cannot stream (a block that
            sees the future).
        """
        self.samples = torch.cat((self.samples, samples.detach().float().cpu().flatten()))
        self._compute_features()
        chunks = 0
        while self.feats is not None and self.feats.size(0) >= self.window.frames:
            self._encode(self.feats[: self.window.frames])
            self.feats = self.feats[self.window.stride :]
            chunks += 1
        return chunks

    @torch.no_grad()
    def finish(self) -> Tensor:
        """Encode the last, shorter chunk. Returns all encodings (1, T', D)."""
        if self.feats is not None and self.feats.size(0) >= self.window.min_frames:
            self._encode(self.feats)
        self.feats = None
        if not self.encodings:
            return torch.zeros(1, 0, self.model.encoder.output_dim)
        return torch.cat(self.encodings, dim=1)

    def partial(self) -> list[int]:
        """The search's best token ids so far."""
        return [] if self.search_state is None else self.search.partial(self.search_state)[0]

    @torch.no_grad()
    def final(self) -> list[int]:
        """The search's final token ids (call after :meth:`finish`)."""
        state = self.search_state if self.search_state is not None else self.search.init(self.model, 1)
        return self.search.finalize(self.model, state)[0]

    def _compute_features(self) -> None:
        frontend = self.model.frontend
        if not self.start_padded:  # the utterance's reflected start, once its samples are here
            padding = frontend.start_padding
            if self.samples.numel() < padding:
                return
            self.samples = torch.cat((self.samples[:padding].flip(0), self.samples))
            self.start_padded = True
        total = self.sample_start + self.samples.numel()
        available = max(0, (total - frontend.win_length) // frontend.hop_length + 1)
        if available <= self.frames_done:
            return
        first = self.frames_done * frontend.hop_length - self.sample_start
        last = (available - 1) * frontend.hop_length + frontend.win_length - self.sample_start
        new = frontend.window_features(self.samples[first:last])  # (frames, F)
        self.feats = new if self.feats is None else torch.cat((self.feats, new))
        self.frames_done = available
        keep_from = available * frontend.hop_length - self.sample_start  # next frame's first sample
        self.samples = self.samples[keep_from:]
        self.sample_start += keep_from

    def _encode(self, feats: Tensor) -> None:
        encoder = self.model.encoder
        if self.encoder_state is None:
            self.encoder_state = encoder.initial_state(1, self.chunk_size, self.num_left_chunks)
            self.search_state = self.search.init(self.model, 1)
        ys, ys_lens, self.encoder_state = encoder.forward_chunk(feats.unsqueeze(0), None, self.encoder_state)
        self.encodings.append(ys)  # (1, chunk, D)
        self.search_state = self.search.step(self.model, self.search_state, ys, ys_lens)
