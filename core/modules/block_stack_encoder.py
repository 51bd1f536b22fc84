"""An encoder made of Conv2d subsampling, positional encoding and a stack of registered
``encoder_block`` components. Conformer and Transformer encoders are this class with
different defaults.

It also carries what unified streaming and non-streaming models (U2/U2++, Wu et al., 2021)
need from an encoder: dynamic chunk training (a random attention chunk per batch), and
chunk-by-chunk inference that carries each block's own streaming state (attention and
convolution caches, Mamba's scan state) and gives the same encodings as the full-utterance
forward under the same chunk mask.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import torch
from torch import Tensor, nn

from speechforge.errors import ConfigError
from speechforge.interfaces import Attention, ChunkWindow, EncoderState, StreamingEncoder, check_chunk_size
from speechforge.modules.export_mode import is_exporting
from speechforge.modules.mask import encoder_attention_mask, padding_mask
from speechforge.modules.positional_encoding import PositionalEncoding
from speechforge.modules.rel_positional_encoding import RelPositionalEncoding
from speechforge.modules.subsampling import Conv2dSubsampling
from speechforge.registry import build_component
from speechforge.value_check import Range

POS_ENCODINGS = ("rel", "abs", "none")


class BlockStackEncoder(StreamingEncoder):
    """Subsampling → positional encoding → N blocks → LayerNorm.

    The encoder offers its blocks ``d_model``, ``heads``, ``ffn``, ``attention``, ``dropout``
    and ``causal``; block-specific keys go in the ``encoder_block`` mapping. Subclasses set the
    defaults of ``encoder_block``, ``attention`` and ``pos_enc``.

    Chunked attention: ``forward(..., chunk_size=N)`` lets each frame see its own chunk of N
    output frames and ``num_left_chunks`` chunks before it (-1: all); ``chunk_size=-1`` is full
    context and ``chunk_size=0`` the encoder's own setting: with ``use_dynamic_chunk`` a random
    chunk per training batch (full context in evaluation), with ``static_chunk_size`` that
    chunk always, else full context.
    """

    default_block: str
    default_attention: str
    default_pos_enc: str

    def __init__(
        self,
        *,
        input_dim: int,
        encoder_block: Mapping[str, Any] | None = None,
        attention: Mapping[str, Any] | None = None,
        pos_enc: str | None = None,
        ffn: Mapping[str, Any] | None = None,
        d_model: Annotated[int, Range(ge=1)] = 256,
        heads: Annotated[int, Range(ge=1)] = 4,
        num_blocks: Annotated[int, Range(ge=1)] = 12,
        subsampling: int = 4,
        subsampling_channels: int = 0,
        subsampling_norm: str = "none",
        dropout: Annotated[float, Range(ge=0, lt=1)] = 0.1,
        pos_dropout: Annotated[float, Range(ge=0, lt=1)] = 0.1,
        causal: bool = False,
        use_dynamic_chunk: bool = False,
        use_dynamic_left_chunk: bool = False,
        static_chunk_size: int = 0,
        max_dynamic_chunk: int = 25,
        full_context_prob: float = 0.5,
    ) -> None:
        super().__init__()
        encoder_block = encoder_block if encoder_block is not None else {"type": self.default_block}
        attention = attention if attention is not None else {"type": self.default_attention}
        pos_enc = pos_enc if pos_enc is not None else self.default_pos_enc
        if pos_enc not in POS_ENCODINGS:
            raise ConfigError(f"pos_enc: must be one of {', '.join(POS_ENCODINGS)}, got {pos_enc!r}")
        _check_chunk_options(
            use_dynamic_chunk, use_dynamic_left_chunk, static_chunk_size, max_dynamic_chunk, full_context_prob
        )
        ffn = ffn if ffn is not None else {"type": "dense"}
        self.output_dim = d_model
        self.heads = heads
        self.embed = Conv2dSubsampling(
            input_dim, d_model, subsampling, subsampling_channels or d_model, subsampling_norm
        )
        self.subsampling_rate = subsampling
        self.use_dynamic_chunk = use_dynamic_chunk
        self.use_dynamic_left_chunk = use_dynamic_left_chunk
        self.static_chunk_size = static_chunk_size
        self.max_dynamic_chunk = max_dynamic_chunk
        self.full_context_prob = full_context_prob
        self.pos_enc = {
            "rel": RelPositionalEncoding(d_model, pos_dropout),
            "abs": PositionalEncoding(d_model, pos_dropout),
            "none": None,
        }[pos_enc]
        self.blocks = nn.ModuleList(
            build_component(
                "encoder_block",
                encoder_block,
                "encoder_block",
                d_model=d_model,
                heads=heads,
                ffn=ffn,
                attention=attention,
                dropout=dropout,
                causal=causal,
            )
            for _ in range(num_blocks)
        )
        self.after_norm = nn.LayerNorm(d_model)
        self._check_positional_encoding(pos_enc)

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    def _check_positional_encoding(self, pos_enc: str) -> None:
        for name, module in self.blocks.named_modules():
            if isinstance(module, Attention) and module.uses_relative_position and pos_enc != "rel":
                raise ConfigError(
                    f"pos_enc: {type(module).__name__} (blocks.{name}) needs relative positions; "
                    f"set pos_enc: rel, not {pos_enc!r}"
                )

    # -- chunk choice ----------------------------------------------------------------------
    def sample_chunk(self, num_frames: int) -> tuple[int, int]:
        """A training batch's chunk (WeNet's dynamic chunk training).

        Draw c in [1, num_frames); in the top ``full_context_prob`` of that range the batch
        gets full context, else a chunk of ``c % max_dynamic_chunk + 1`` frames, so that share
        of the batches (WeNet: half) trains the non-streaming case and the rest spread over
        chunks 1 ... ``max_dynamic_chunk``. With ``use_dynamic_left_chunk`` the left context
        is drawn too, from 0 to the chunks there are.

        Args: num_frames: T' of the batch after subsampling.
        Returns: (chunk_size, num_left_chunks), chunk_size -1 for full context.
        """
        if num_frames < 2:
            return -1, -1
        drawn = int(torch.randint(1, num_frames, (1,)))
        if drawn > int(num_frames * (1.0 - self.full_context_prob)):
            return -1, -1
        chunk = drawn % self.max_dynamic_chunk + 1
        if not self.use_dynamic_left_chunk:
            return chunk, -1
        max_left = max(1, (num_frames - 1) // chunk)
        return chunk, int(torch.randint(0, max_left, (1,)))

    def resolve_chunk(self, chunk_size: int, num_left_chunks: int, num_frames: int) -> tuple[int, int]:
        """What ``chunk_size=0`` (the encoder's own setting) means for this call; other values
        pass through. Returns (chunk_size, num_left_chunks), chunk_size -1 for full context.

        Raises: ConfigError for a chunk_size below -1.
        """
        if check_chunk_size(chunk_size) != 0:
            return chunk_size, num_left_chunks
        if self.use_dynamic_chunk and self.training:
            return self.sample_chunk(num_frames)
        if self.static_chunk_size > 0:
            return self.static_chunk_size, num_left_chunks
        return -1, -1

    # -- full utterance ----------------------------------------------------------------------
    def forward_layers(
        self,
        feats: Tensor,
        lengths: Tensor,
        layers: Sequence[int],
        chunk_size: int = 0,
        num_left_chunks: int = -1,
    ) -> tuple[Tensor, Tensor, list[Tensor]]:
        """The full-utterance forward (``forward`` is this with no ``layers``).

        Args:
            feats: (B, T, F); lengths (B,).
            layers: indices into ``blocks`` whose outputs to return; negative from the end.
            chunk_size: attention chunk in output frames; -1 full context; 0 the encoder's own
                setting (see the class docstring).
            num_left_chunks: chunks of left context each chunk sees; -1 for all.
        Returns: (B, T', D) after the final LayerNorm, lengths (B,), and the output of each
            requested block (B, T', D), before that norm, in the order asked.
        """
        wanted = [self._block_index(layer) for layer in layers]
        x, lengths = self.embed(feats, lengths)  # (B, T', D)
        pos_emb = None
        if self.pos_enc is not None:
            x, pos_emb = self.pos_enc(x)
        chunk_size, num_left_chunks = self.resolve_chunk(chunk_size, num_left_chunks, x.size(1))
        # an exported graph takes any lengths, so it always builds the padding mask
        unpadded = not is_exporting() and bool((lengths == x.size(1)).all())
        pad_mask = None if unpadded else padding_mask(lengths, x.size(1)).unsqueeze(1)  # (B, 1, T')
        att_mask = pad_mask
        if chunk_size > 0:
            full = padding_mask(lengths, x.size(1)).unsqueeze(1)
            att_mask = encoder_attention_mask(full, chunk_size, num_left_chunks)  # (B, T', T')
        outputs: dict[int, Tensor] = {}
        for i, block in enumerate(self.blocks):
            x, _ = block(x, att_mask, pad_mask, pos_emb)
            if i in wanted:
                outputs[i] = x
        return self.after_norm(x), lengths, [outputs[i] for i in wanted]

    def _block_index(self, layer: int) -> int:
        """``layer`` as an index from 0; ConfigError when there is no such block."""
        count = self.num_layers
        if not -count <= layer < count:
            raise ConfigError(
                f"encoder layer {layer}: out of range for {count} blocks (valid: {-count} ... {count - 1})"
            )
        return layer % count

    # -- streaming -------------------------------------------------------------------------
    def chunk_window(self, chunk_size: int) -> ChunkWindow:
        return self.embed.chunk_window(chunk_size)

    def initial_state(self, batch_size: int, chunk_size: int, num_left_chunks: int = -1) -> EncoderState:
        """Each block's own state before the first chunk; ``chunk_size * num_left_chunks`` frames
        of attention history are kept between chunks (all with -1).

        Raises: ConfigError naming the first block that cannot stream (a convolution that sees
        the future, a bidirectional Mamba...).
        """
        if chunk_size <= 0:
            raise ValueError(f"streaming needs a chunk_size > 0, got {chunk_size}")
        reference = self.after_norm.weight
        blocks = []
        for i, block in enumerate(self.blocks):
            try:
                blocks.append(block.initial_state(batch_size, reference.device, reference.dtype))
            except ConfigError as error:
                raise ConfigError(f"encoder: blocks.{i} {error}") from None
        history = chunk_size * num_left_chunks if num_left_chunks >= 0 else -1
        return EncoderState(blocks, offset=0, history=history)

    def forward_chunk(
        self, feats: Tensor, lengths: Tensor | None, state: EncoderState
    ) -> tuple[Tensor, Tensor, EncoderState]:
        """One chunk of a batch through the stack; each block gets and returns its own state.

        Args:
            feats: (B, window, F), the chunk's :meth:`chunk_window` of features.
            lengths: (B,) valid frames of the window, or None when all are valid.
            state: from :meth:`initial_state` or the previous chunk.
        Returns: (B, chunk, D), valid lengths (B,), the next state.
        """
        if len(state.blocks) != len(self.blocks):
            raise ValueError(f"the state has {len(state.blocks)} block states for {len(self.blocks)} blocks")
        full = torch.full((feats.size(0),), feats.size(1), dtype=torch.long, device=feats.device)
        x, valid = self.embed(feats, full if lengths is None else lengths)  # (B, chunk, D)
        cached = state.cached_frames
        pos_emb = None
        if isinstance(self.pos_enc, RelPositionalEncoding):
            x, pos_emb = self.pos_enc(x, offset=cached)  # pos_emb covers cached + chunk keys
        elif self.pos_enc is not None:
            x, _ = self.pos_enc(x, offset=state.offset)
        pad_mask = att_mask = None
        if lengths is not None and not bool((valid == x.size(1)).all()):
            pad_mask = padding_mask(valid, x.size(1)).unsqueeze(1)  # (B, 1, chunk)
            att_mask = torch.cat((pad_mask.new_ones(x.size(0), 1, cached), pad_mask), dim=-1)  # (B, 1, Tc + chunk)
        blocks = []
        for block, block_state in zip(self.blocks, state.blocks):
            x, block_state = block(x, att_mask, pad_mask, pos_emb, block_state)
            blocks.append(block.limit_history(block_state, state.history))
        next_state = EncoderState(blocks, offset=state.offset + x.size(1), history=state.history)
        return self.after_norm(x), valid, next_state

    def forward_chunk_by_chunk(
        self, feats: Tensor, lengths: Tensor, chunk_size: int, num_left_chunks: int = -1
    ) -> tuple[Tensor, Tensor]:
        """Encode whole utterances chunk by chunk, as a stream would arrive, through
        :meth:`forward_chunk` with the windows of :meth:`chunk_window`. Equals
        ``forward(feats, lengths, chunk_size, num_left_chunks)`` on every valid frame.

        Args: feats (B, T, F), lengths (B,), chunk_size > 0 output frames, num_left_chunks
            (-1 for all).
        Returns: (B, T', D), lengths (B,).
        """
        if chunk_size <= 0:
            raise ValueError(f"chunk-by-chunk encoding needs a chunk_size > 0, got {chunk_size}")
        window = self.chunk_window(chunk_size)
        state = self.initial_state(feats.size(0), chunk_size, num_left_chunks)
        outputs = []
        for start in range(0, feats.size(1) - window.min_frames + 1, window.stride):
            chunk_feats = feats[:, start : start + window.frames]
            chunk_lens = (lengths - start).clamp(0, chunk_feats.size(1))
            ys, _, state = self.forward_chunk(chunk_feats, chunk_lens, state)
            outputs.append(ys)
        out_lens = self.embed.output_lengths(lengths)
        if not outputs:
            return feats.new_zeros(feats.size(0), 0, self.output_dim), out_lens
        return torch.cat(outputs, dim=1), out_lens


def _check_chunk_options(dynamic: bool, dynamic_left: bool, static: int, max_dynamic: int, full_prob: float) -> None:
    if static < 0:
        raise ConfigError(f"static_chunk_size: must be >= 0 (0: none), got {static}")
    if dynamic and static:
        raise ConfigError(
            f"static_chunk_size: {static} conflicts with use_dynamic_chunk: true; set one of them"
        )
    if dynamic_left and not dynamic:
        raise ConfigError("use_dynamic_left_chunk: needs use_dynamic_chunk: true")
    if max_dynamic < 1:
        raise ConfigError(f"max_dynamic_chunk: must be >= 1, got {max_dynamic}")
    if not 0.0 <= full_prob < 1.0:
        raise ConfigError(f"full_context_prob: must be in [0, 1) (1 would never train a chunk), got {full_prob}")
