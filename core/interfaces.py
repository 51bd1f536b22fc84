"""The contract of every registry kind: base classes, factory context and forward signatures.

Each base below is what the registry checks on registration and after building. Its docstring
says which *context* keys the builder offers the factory (a factory takes those it declares as
keyword parameters) and the exact ``forward`` signature, so that any ``ffn``, ``attention`` or
``encoder_block`` drops into any encoder. Masks are boolean with ``True`` meaning *keep*.

``chunk_size`` has one meaning wherever it appears (``Encoder.forward``, ``ASRModel.encode``,
the Recognizer, ``speechforge decode --chunk-size``, ``decode.chunk_sizes``, ``speechforge
stream``), counted in encoder output frames:

- ``-1`` (:data:`FULL_CONTEXT`): every frame sees the whole utterance;
- ``0`` (:data:`ENCODER_CHUNK`): the encoder's configured behaviour: with dynamic chunk
  training a random chunk per batch in training and full context otherwise, with a static
  chunk that chunk always, else full context;
- ``N > 0``: chunks of N frames, each seeing itself and ``num_left_chunks`` chunks before it
  (-1: all); what a stream of N-frame chunks computes.

Any other value is an error (:func:`check_chunk_size`).

Components hold plain torch layers (``nn.Linear``, ``nn.Conv1d``/``nn.Conv2d``) and call them
as modules, never reading a ``.weight`` to run a kernel, so that a :class:`Quantizer`'s module
swap or parametrization reaches every path. CPU inference speed comes from
:func:`speechforge.modules.inference_transform.optimize_for_cpu_inference`; a component may
declare ``fusable_activations`` (pairs of attribute names, a layer and the activation module
that directly follows it) or define ``cpu_inference_form()`` for it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

import torch
from torch import Tensor, nn

from speechforge.errors import ConfigError

if TYPE_CHECKING:
    from speechforge.asr_model import ASRModel

#: ``chunk_size`` values with a name (see the module docstring).
FULL_CONTEXT = -1
ENCODER_CHUNK = 0


def check_chunk_size(chunk_size: int, key: str = "chunk_size") -> int:
    """Returns ``chunk_size`` when it is -1, 0 or positive; else a ConfigError naming ``key``."""
    if chunk_size < FULL_CONTEXT:
        raise ConfigError(
            f"{key}: must be -1 (full context), 0 (the encoder's own setting) or N > 0 (chunks of N frames), "
            f"got {chunk_size}"
        )
    return chunk_size


#: Per-block streaming state: the block decides its keys (``"att"``, ``"cnn"``, ``"conv"``,
#: ``"ssm"``...) and their shapes; only the block reads them.
BlockCache = dict[str, Tensor]


@dataclass(frozen=True)
class ChunkWindow:
    """Input frames a chunk of output frames needs (computed by the subsampling).

    Consecutive windows overlap by the subsampling's right context, so the subsampling keeps
    no state across chunks.

    Attributes:
        frames: input frames of a full chunk's window.
        stride: input frames between the starts of consecutive windows.
        min_frames: the fewest input frames that give one output frame (a last, shorter
            window needs at least this many).
    """

    frames: int
    stride: int
    min_frames: int


@dataclass
class EncoderState:
    """Where one stream (a batch of utterances, chunk by chunk) is in a streaming encoder.

    Attributes:
        blocks: each block's own state (:meth:`EncoderBlock.initial_state`), in block order.
        offset: output frames produced so far (the absolute position of the next chunk).
        history: output frames of attention history kept for the next chunk
            (``chunk_size * num_left_chunks``); -1 keeps all.
    """

    blocks: list[BlockCache]
    offset: int = 0
    history: int = -1

    @property
    def cached_frames(self) -> int:
        """Past frames a block with attention history holds before the next chunk."""
        return self.offset if self.history < 0 else min(self.offset, self.history)


class Frontend(nn.Module, ABC):
    """Waveforms to features. Kind ``frontend``; factory context: none.

    Attributes:
        output_dim: feature dimension F.
        sample_rate: the rate the waveforms must have.
    """

    output_dim: int
    sample_rate: int

    @abstractmethod
    def forward(self, waveforms: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Args: waveforms (B, S) float, lengths (B,). Returns feats (B, T, F), lengths (B,)."""


class FeedForward(nn.Module, ABC):
    """Position-wise feed-forward network. Kind ``ffn``; context: ``d_model``."""

    @abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """Args: x (B, T, D). Returns (B, T, D)."""


class Attention(nn.Module, ABC):
    """Multi-head attention. Kind ``attention``; context: ``d_model``, ``heads``.

    ``uses_relative_position`` tells the encoder to feed relative positional embeddings
    (``pos_emb`` of shape (1, Tk + Tq - 1, D), distances Tk-1 ... -(Tq-1)) instead of adding
    absolute encodings to the input.
    """

    uses_relative_position: ClassVar[bool] = False

    @abstractmethod
    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None,
        pos_emb: Tensor | None = None,
        cache: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend ``query`` to ``key``/``value``.

        Args:
            query: (B, Tq, D).
            key, value: (B, Tk, D).
            mask: (B, 1, Tk) key padding or (B, Tq, Tk) full mask, bool, True = attend; None
                attends everywhere. Rows with nothing to attend to give zeros.
            pos_emb: relative positional embeddings, see the class docstring.
            cache: (B, H, Tc, 2 * D/H) keys and values of earlier chunks (self-attention
                streaming), prepended to ``key``/``value``; :meth:`initial_cache` starts a
                stream.
        Returns:
            out (B, Tq, D), and the new cache (B, H, Tc + Tk, 2 * D/H) when a cache was
            given, else None.
        """

    def initial_cache(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """The self-attention cache before the first chunk: (B, H, 0, 2 * D/H).

        Raises: ConfigError for an attention that keeps no streaming cache (the default).
        """
        raise ConfigError(f"attention {type(self).__name__} keeps no streaming cache, so it cannot stream")


class EncoderBlock(nn.Module, ABC):
    """One encoder layer. Kind ``encoder_block``; context: ``d_model``, ``heads``, ``ffn``,
    ``attention`` (component configs the block builds with
    :func:`speechforge.registry.build_component`), ``dropout``, ``causal``.

    Streaming: a block owns its state. :meth:`initial_state` makes it, ``forward`` takes it as
    ``cache`` and returns the next one, :meth:`limit_history` bounds what it keeps of the past;
    the encoder stacks the states of its blocks without reading them.
    """

    def initial_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> BlockCache:
        """This block's streaming state before the first chunk of ``batch_size`` utterances.

        Raises: ConfigError when the block cannot stream, phrased to follow the block's name
        in the encoder's message (``has a convolution that sees the future; ...``).
        """
        raise ConfigError(f"({type(self).__name__}) has no streaming state, so it cannot stream")

    def limit_history(self, state: BlockCache, frames: int) -> BlockCache:
        """Keep at most ``frames`` past frames of attention history (-1: all). Blocks whose state
        has a fixed size (convolution or scan state) return it unchanged, the default."""
        return state

    @abstractmethod
    def forward(
        self,
        x: Tensor,
        att_mask: Tensor,
        pad_mask: Tensor,
        pos_emb: Tensor | None = None,
        cache: BlockCache | None = None,
    ) -> tuple[Tensor, BlockCache | None]:
        """Args:
            x: (B, T, D).
            att_mask: (B, T, T) or (B, 1, T) bool, True = attend (includes chunk masks).
            pad_mask: (B, 1, T) bool, True = valid frame.
            pos_emb: relative positional embeddings when the attention uses them.
            cache: streaming state of this block from :meth:`initial_state` or the previous
                chunk, or None for a whole utterance.
        Returns: (B, T, D) and the new state (None when ``cache`` was None).
        """


class Encoder(nn.Module, ABC):
    """Features to encodings. Kind ``encoder``; context: ``input_dim``.

    An encoder implements :meth:`forward_layers`; ``forward`` is that call with no layers
    asked for. Layer outputs serve objectives and heads that read inside the stack
    (self-supervised targets from chosen layers, weighted-layer downstream models).

    Attributes:
        output_dim: D of the encodings.
        subsampling_rate: input frames per output frame.
        num_layers: the blocks ``forward_layers`` indexes.
    """

    output_dim: int
    subsampling_rate: int
    num_layers: int

    def forward(
        self, feats: Tensor, lengths: Tensor, chunk_size: int = 0, num_left_chunks: int = -1
    ) -> tuple[Tensor, Tensor]:
        """Args:
            feats: (B, T, F); lengths (B,).
            chunk_size: -1 full context, 0 the encoder's configured behaviour, N chunks of N
                output frames (the module docstring).
            num_left_chunks: chunks of left context each chunk sees; -1 for all.
        Returns: encodings (B, T', D), lengths (B,).
        """
        encodings, lengths, _ = self.forward_layers(feats, lengths, (), chunk_size, num_left_chunks)
        return encodings, lengths

    @abstractmethod
    def forward_layers(
        self,
        feats: Tensor,
        lengths: Tensor,
        layers: Sequence[int],
        chunk_size: int = 0,
        num_left_chunks: int = -1,
    ) -> tuple[Tensor, Tensor, list[Tensor]]:
        """``forward`` that also returns the outputs of chosen blocks.

        Args:
            feats, lengths, chunk_size, num_left_chunks: as for ``forward``.
            layers: indices into the encoder's block list, ``num_layers`` of them; negative
                ones count from the end (-1 is the last block). An index out of range raises
                ConfigError.
        Returns: encodings (B, T', D), lengths (B,), and per requested index, in the order
            given, the output of that block (B, T', D), before any final normalisation.
        """

    def resolve_chunk(self, chunk_size: int, num_left_chunks: int, num_frames: int) -> tuple[int, int]:
        """What ``chunk_size`` means for a call on ``num_frames`` output frames: 0 becomes the
        encoder's configured behaviour (full context here; encoders with chunk options
        override), other values pass through. Returns (chunk_size, num_left_chunks), chunk_size
        -1 for full context. Raises: ConfigError for a chunk_size below -1."""
        if check_chunk_size(chunk_size) == ENCODER_CHUNK:
            return FULL_CONTEXT, -1
        return chunk_size, num_left_chunks


class StreamingEncoder(Encoder):
    """An encoder that encodes chunk by chunk, carrying an :class:`EncoderState`, with the same
    encodings as ``forward(feats, lengths, chunk_size, num_left_chunks)`` on every valid frame."""

    @abstractmethod
    def chunk_window(self, chunk_size: int) -> ChunkWindow:
        """The feature frames a chunk of ``chunk_size`` (> 0) output frames needs."""

    @abstractmethod
    def initial_state(self, batch_size: int, chunk_size: int, num_left_chunks: int = -1) -> EncoderState:
        """The state before the first chunk. Raises: ConfigError when the encoder, or one of its
        blocks, cannot stream."""

    @abstractmethod
    def forward_chunk(
        self, feats: Tensor, lengths: Tensor | None, state: EncoderState
    ) -> tuple[Tensor, Tensor, EncoderState]:
        """Encode the next chunk.

        Args:
            feats: (B, window, F), the chunk's :meth:`chunk_window` of features (fewer frames
                at the end, at least ``min_frames``).
            lengths: (B,) valid frames of the window (utterances end at different chunks), or
                None when all are valid.
            state: from :meth:`initial_state` or the previous chunk.
        Returns: encodings (B, chunk, D), their valid lengths (B,), and the next state.
        """


class Decoder(nn.Module, ABC):
    """Attention decoders and transducer predictors. Kind ``decoder``; context:
    ``vocab_size``, ``encoder_dim``. Their forward contract is owned by the losses and searches
    that use them, which name the decoder kinds they accept.

    A model holds one decoder (``decoder: {type: ...}``, state-dict prefix ``decoder.``) or
    several named ones (``decoders: {attention: {type: ...}, transducer: {...}}``, prefix
    ``decoders.<name>.``), never both. Losses and searches find theirs with
    :meth:`ASRModel.find_decoder <speechforge.asr_model.ASRModel.find_decoder>` by a base
    class (or a runtime-checkable Protocol declaring a capability); when the model holds
    several of that kind, a ``decoder: NAME`` key on the loss or search config says which, so
    such losses and searches take a ``decoder: str | None = None`` key.
    """


@dataclass(frozen=True)
class Progress:
    """How far a training run has got, for hooks and losses whose behaviour follows the run
    (a temperature annealed over training, a loss switched on after warm-up).

    ``fraction`` is what the learning-rate schedules follow: optimizer steps over
    ``total_steps`` or the share of the wall-clock budget (``train.max_minutes``) spent,
    whichever is further, capped at 1.
    """

    step: int  # optimizer steps done
    epoch: int  # epochs finished (the current epoch, 0-based)
    total_steps: int  # expected optimizer steps of the run: train.max_steps, else epochs x steps per epoch
    fraction: float  # of the run done, in [0, 1]


@dataclass
class LossInputs:
    """What a loss sees of one batch. ``targets`` are padded with -1. ``progress`` is the
    run's position while training, None outside training (decoding, scoring)."""

    model: ASRModel
    encoder_out: Tensor  # (B, T, D)
    encoder_lens: Tensor  # (B,)
    targets: Tensor  # (B, U)
    target_lens: Tensor  # (B,)
    progress: Progress | None = None


@dataclass
class LossOutput:
    """A loss value plus named extra scalars to log (a transducer's simple and pruned parts,
    a decoder's token accuracy). The model reports each scalar detached as
    ``<loss name>_<scalar name>`` next to the loss; scalars never enter the total. A scalar
    named ``acc`` or ``acc_<x>`` is an accuracy, a share in [0, 1]: ``report.md``'s table of
    epochs and ``speechforge curve``'s plot show it per epoch, in training and validation."""

    loss: Tensor  # ()
    scalars: dict[str, Tensor] = field(default_factory=dict)  # name -> ()


class Loss(nn.Module, ABC):
    """A training objective. Kind ``loss``; context: ``vocab_size``, ``encoder_dim``.

    Entries of the ``losses:`` list are weighted and summed; ``weight`` is read by the model,
    not passed to the factory. A loss that sets ``needs_ctc_head`` makes the model build its
    CTC head (``model.ctc``); without such a loss (or ``ctc_head: true``) the model has none.
    """

    needs_ctc_head: ClassVar[bool] = False

    @abstractmethod
    def forward(self, inputs: LossInputs) -> Tensor | LossOutput:
        """Returns a scalar, the loss averaged over utterances of the batch, or a
        :class:`LossOutput` carrying that scalar and extra ones to log."""


class Quantizer(ABC):
    """Weight quantization. Kind ``quantizer``; context: none. Chosen by the config's top-level
    ``quantizer:`` section and applied by :func:`speechforge.builder.build_model` to every model
    built from that config.

    A component whose own parameters are weights to quantize (stacked ``(..., O, I)`` weights
    contracting over their last dim, such as MoE expert banks) names them in a
    ``quantizable_weights`` attribute (a tuple of parameter names); ``nn.Linear`` layers are
    quantizable as they are. A component with layers used only by training losses (a
    transducer's simple projections) names those children in ``training_only_modules``; a
    packed export leaves them out.
    """

    @abstractmethod
    def prepare(self, model: nn.Module) -> nn.Module:
        """Install fake quantization on the target weights, in place, by module swap or
        parametrization (quantization-aware training). Called after ``train.init_from`` loaded
        float weights under their float names and before the optimizer is built; a checkpoint
        of the prepared model (the float originals plus any learned quantization parameters)
        loads back into a model prepared the same way. Returns the model."""

    @abstractmethod
    def export(self, model: nn.Module) -> dict[str, Tensor]:
        """The state dict of the packed inference model: each target's packed codes and
        metadata under the target's name, every other tensor of ``model`` (a prepared model)
        as it is."""

    @abstractmethod
    def packed_form(self, model: nn.Module) -> nn.Module:
        """Swap the targets of a model built from the same config but not prepared (its
        parameters may be on the meta device) for empty packed layers, so that its state dict
        has exactly the keys and shapes :meth:`export` gives and
        ``load_state_dict(exported, assign=True)`` fills it without materialising float
        weights. Returns the model."""


class SearchMethod(ABC):
    """A decoding method. Kind ``search``; context: ``lm`` (the experiment's n-gram LM or
    None, for factories that declare it). The factory's other keys come from the config's
    ``decode.beam_size`` (where it takes a ``beam_size``) and ``decode.options.METHOD``, under
    ``--option METHOD.key=value``. Chunk settings are applied by the caller when it runs the
    encoder, once per batch for every method, so every method sees ready encodings. A method
    takes the model parts it needs through ``model.find_ctc_head`` and ``model.find_decoder``,
    which fail with a ConfigError naming the missing part."""

    @abstractmethod
    def __call__(
        self, model: ASRModel, encoder_out: Tensor, encoder_lens: Tensor
    ) -> list[list[int]]:
        """Args: encoder_out (B, T, D), encoder_lens (B,). Returns best token ids per utterance."""


SearchState = TypeVar("SearchState")


class StreamingSearch(SearchMethod, Generic[SearchState]):
    """A search that can run while the encodings arrive, chunk by chunk: ``init``, ``step`` per
    chunk, ``partial`` for display at any time, ``finalize`` at the end. Stepping through
    the chunks of an encoder output and finalizing gives what ``__call__`` gives on all of it.

    ``speechforge stream --method`` runs only searches that are StreamingSearch instances;
    it tells them without building them, so a search registered through a factory function
    annotates its return type with its StreamingSearch class.

    The state is the search's own (hypotheses, scores, a predictor's state...).
    """

    @abstractmethod
    def init(self, model: ASRModel, batch_size: int) -> SearchState:
        """The state before the first chunk of ``batch_size`` utterances."""

    @abstractmethod
    def step(self, model: ASRModel, state: SearchState, encoder_chunk: Tensor, chunk_lens: Tensor) -> SearchState:
        """Args: encoder_chunk (B, T, D) the next encodings; chunk_lens (B,) their valid frames
        (0 for an utterance that has ended). Returns the next state."""

    @abstractmethod
    def partial(self, state: SearchState) -> list[list[int]]:
        """The best token ids per utterance so far."""

    @abstractmethod
    def finalize(self, model: ASRModel, state: SearchState) -> list[list[int]]:
        """The final token ids per utterance, after the last chunk."""

    def __call__(self, model: ASRModel, encoder_out: Tensor, encoder_lens: Tensor) -> list[list[int]]:
        """The whole encoder output as one chunk."""
        state = self.step(model, self.init(model, encoder_out.size(0)), encoder_out, encoder_lens)
        return self.finalize(model, state)


class Task(nn.Module, ABC):
    """What a model trains for (``asr``, ``ssl``). Kind ``task``; context: ``vocab_size``
    (offered when the config has one; required when the task needs transcripts).

    A task factory takes the model sections of the config (``frontend``, ``encoder``, ...) as
    keyword arguments; the builder passes exactly the top-level keys it declares.

    ``needs_transcripts`` (read from the registered class) says whether training needs a
    tokenizer and a transcript per utterance. A task that does not (self-supervised
    pretraining) trains on data dirs of ``wav.scp`` and ``utt2dur`` only, without
    ``vocab_size``; its batches have no ``targets``/``target_lens``.
    """

    needs_transcripts: ClassVar[bool] = True

    @abstractmethod
    def forward(self, batch: Mapping[str, Tensor], progress: Progress | None = None) -> dict[str, Tensor]:
        """Returns at least ``{"loss": scalar}`` plus named scalar parts; the trainer logs
        every key (``train_<key>``, and averaged over the validation set as ``valid_<key>``).
        ``progress`` is the run's position (None outside training)."""


#: The kinds core declares, with their bases. Plugins may add more through ``add_kind``.
CORE_KINDS: Sequence[tuple[str, type, str]] = (
    ("frontend", Frontend, "waveforms -> features"),
    ("encoder_block", EncoderBlock, "one encoder layer"),
    ("ffn", FeedForward, "position-wise feed-forward"),
    ("attention", Attention, "multi-head attention"),
    ("encoder", Encoder, "features -> encodings"),
    ("decoder", Decoder, "attention decoders, transducer predictors"),
    ("loss", Loss, "training objectives"),
    ("quantizer", Quantizer, "weight quantization"),
    ("search", SearchMethod, "decoding methods"),
    ("task", Task, "what a model trains for"),
)

