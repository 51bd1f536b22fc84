"""The contract of every registry kind: base classes, factory context and forward signatures.

Each base below is what the registry checks on registration and after building. Its docstring
says which *context* keys the builder offers the factory (a factory takes those it declares as
keyword parameters) and the exact ``forward`` signature, so that any ``ffn``, ``attention`` or
``encoder_block`` drops into any encoder. Masks are boolean with ``True`` meaning *keep*.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from torch import Tensor, nn

if TYPE_CHECKING:
    from speechforge.asr_model import ASRModel

#: Per-block streaming state: the block decides its keys (``"att"``, ``"cnn"``, ``"ssm"``...).
BlockCache = dict[str, Tensor]


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
                streaming), prepended to ``key``/``value``; pass an empty (B, H, 0, 2 * D/H)
                tensor to start a stream.
        Returns:
            out (B, Tq, D), and the new cache (B, H, Tc + Tk, 2 * D/H) when a cache was
            given, else None.
        """


class EncoderBlock(nn.Module, ABC):
    """One encoder layer. Kind ``encoder_block``; context: ``d_model``, ``heads``, ``ffn``,
    ``attention`` (component configs the block builds with
    :func:`speechforge.registry.build_component`), ``dropout``, ``causal``.
    """

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
            cache: streaming state of this block from the previous chunk, or None.
        Returns: (B, T, D) and the new state (None when ``cache`` was None).
        """


class Encoder(nn.Module, ABC):
    """Features to encodings. Kind ``encoder``; context: ``input_dim``.

    Attributes:
        output_dim: D of the encodings.
        subsampling_rate: input frames per output frame.
    """

    output_dim: int
    subsampling_rate: int

    @abstractmethod
    def forward(
        self, feats: Tensor, lengths: Tensor, chunk_size: int = 0, num_left_chunks: int = -1
    ) -> tuple[Tensor, Tensor]:
        """Args:
            feats: (B, T, F); lengths (B,).
            chunk_size: attention chunk in output frames; 0 or -1 for full context.
            num_left_chunks: chunks of left context each chunk sees; -1 for all.
        Returns: encodings (B, T', D), lengths (B,).
        """


class Decoder(nn.Module, ABC):
    """Attention decoders and transducer predictors. Kind ``decoder``; context:
    ``vocab_size``, ``encoder_dim``. Their forward contract is owned by the losses and searches
    that use them, which name the decoder kinds they accept."""


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


class Loss(nn.Module, ABC):
    """A training objective. Kind ``loss``; context: ``vocab_size``, ``encoder_dim``.

    Entries of the ``losses:`` list are weighted and summed; ``weight`` is read by the model,
    not passed to the factory.
    """

    @abstractmethod
    def forward(self, inputs: LossInputs) -> Tensor:
        """Returns a scalar: the loss averaged over utterances of the batch."""


class Quantizer(ABC):
    """Weight quantization. Kind ``quantizer``; context: none.

    ``prepare`` swaps layers before training (quantization-aware training);
    ``export`` returns the packed weights to store.
    """

    @abstractmethod
    def prepare(self, model: nn.Module) -> nn.Module:
        """Replace target layers in place; returns the model."""

    @abstractmethod
    def export(self, model: nn.Module) -> dict[str, Tensor]:
        """Packed weights, keyed by parameter name."""


class SearchMethod(ABC):
    """A decoding method. Kind ``search``; context: none. Chunk settings are applied by the
    caller when it runs the encoder, so every method sees ready encodings."""

    @abstractmethod
    def __call__(
        self, model: ASRModel, encoder_out: Tensor, encoder_lens: Tensor
    ) -> list[list[int]]:
        """Args: encoder_out (B, T, D), encoder_lens (B,). Returns best token ids per utterance."""


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

