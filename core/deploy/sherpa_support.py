"""What a model must be for sherpa-onnx, checked before anything is exported, each refusal one
line saying why: the features and encoder of every layout, the CTC head and streaming state of
the WeNet CTC layout."""
from __future__ import annotations

from torch import nn

from speechforge.errors import ConfigError
from speechforge.modules.block_stack_encoder import BlockStackEncoder
from speechforge.modules.ctc_head import CTCHead
from speechforge.modules.fbank_frontend import FbankFrontend

#: streaming state keys the chunked graph carries (attention and convolution caches)
CHUNK_STATE_KEYS = ({"att"}, {"att", "cnn"})


def check_offline(model: nn.Module) -> tuple[FbankFrontend, BlockStackEncoder, CTCHead]:
    """The frontend, encoder and CTC head of a model sherpa-onnx can run offline.

    Raises: ConfigError when sherpa-onnx cannot reproduce the features or run the encoder
    (:func:`check_features`, :func:`check_encoder`), or there is no CTC head (attention-only
    models have no WeNet CTC layout).
    """
    frontend, encoder = check_features(model), check_encoder(model)
    ctc = getattr(model, "ctc", None)
    if not isinstance(ctc, CTCHead):
        raise ConfigError("ctc_head: the WeNet CTC layout is a CTC model; this one has no CTC head (add {type: ctc} to losses)")
    return frontend, encoder, ctc


def check_features(model: nn.Module) -> FbankFrontend:
    """The frontend of a model whose features sherpa-onnx computes itself, in every layout.

    Raises: ConfigError unless it is the fbank frontend in its Kaldi-compatible mode with
    25 ms frames every 10 ms (what kaldi-native-fbank computes in sherpa-onnx).
    """
    frontend = getattr(model, "frontend", None)
    if not isinstance(frontend, FbankFrontend):
        raise ConfigError(f"frontend: sherpa-onnx computes Kaldi filterbanks itself; {type(frontend).__name__} is not the fbank frontend")
    if not frontend.kaldi_compatible:
        raise ConfigError(
            "frontend.kaldi_compatible: sherpa-onnx computes Kaldi filterbanks (povey window, centred frames), "
            "not this frontend's; train with kaldi_compatible: true to export"
        )
    if (frontend.frame_length_ms, frontend.frame_shift_ms) != (25.0, 10.0):
        raise ConfigError(
            f"frontend.frame_length_ms/frame_shift_ms: sherpa-onnx uses 25 ms every 10 ms, the model "
            f"{frontend.frame_length_ms:g} ms every {frontend.frame_shift_ms:g} ms"
        )
    return frontend


def check_encoder(model: nn.Module) -> BlockStackEncoder:
    """The encoder of a model, when it is the subsampling + block stack the exported graphs
    call. Raises: ConfigError for another encoder."""
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, BlockStackEncoder):
        raise ConfigError(f"encoder: the ONNX export needs a subsampling + block-stack encoder, not {type(encoder).__name__}")
    return encoder


def is_streaming(encoder: BlockStackEncoder) -> bool:
    """Whether the model was trained to stream (dynamic or static chunks), so it gets the
    chunked graph too."""
    return encoder.use_dynamic_chunk or encoder.static_chunk_size > 0


def check_streaming(encoder: BlockStackEncoder) -> bool:
    """Whether the blocks carry a convolution cache besides the attention cache.

    Raises: ConfigError naming the first block that cannot stream, or whose streaming state
    is not the attention (and convolution) caches the WeNet chunked layout carries.
    """
    state = encoder.initial_state(1, 1)  # raises for a convolution that sees the future
    keys = {frozenset(block) for block in state.blocks}
    for i, block_state in enumerate(state.blocks):
        if set(block_state) not in CHUNK_STATE_KEYS:
            raise ConfigError(
                f"encoder: blocks.{i} ({type(encoder.blocks[i]).__name__}) streams with state {sorted(block_state)}; "
                f"the WeNet chunked layout carries only attention and convolution caches"
            )
    if len(keys) > 1:
        raise ConfigError("encoder: the WeNet chunked layout needs every block to carry the same caches")
    return "cnn" in state.blocks[0]


def check_exportable(model: nn.Module) -> None:
    """Every check :func:`~speechforge.deploy.wenet_ctc_export.export_wenet_ctc` makes before
    it writes a file. Raises: ConfigError, one line."""
    _, encoder, _ = check_offline(model)
    if is_streaming(encoder):
        check_streaming(encoder)


def conv_kernel(encoder: BlockStackEncoder) -> int:
    """K of the blocks' convolution, whose cache holds K - 1 frames (1: no convolution)."""
    module = getattr(encoder.blocks[0], "conv_module", None)
    return 1 if module is None else module.left_context + 1
