"""ESPnet ``ConformerEncoder`` weights → speechforge ``conformer`` encoder weights.

Covers the ESPnet encoder built with ``input_layer: conv2d|conv2d6|conv2d8``,
``rel_pos_type: latest`` (``rel_pos`` + ``rel_selfattn``), ``positionwise_layer_type: linear``,
with or without macaron FFNs and the convolution module. Parameter names inside a block are
the same in both toolkits; only the containers differ:

========================  ===================
ESPnet                    speechforge
========================  ===================
``encoders.N.*``          ``blocks.N.*``
``embed.out.0.*``         ``embed.out.*``
``embed.conv.*``          ``embed.conv.*``
``after_norm.*``          ``after_norm.*``
========================  ===================

Three tensors change layout (as a pre-change speechforge checkpoint's do when it loads):
ESPnet's ``linear_q``/``linear_k``/``linear_v`` become one ``linear_qkv``, the pointwise
Conv1d weights (O, I, 1) become ``nn.Linear`` weights (O, I), and the depthwise Conv1d weight
(D, 1, K) becomes the (D, 1, 1, K) weight of our channels-last ``nn.Conv2d``.

A ``rel_pos_type: legacy`` encoder has the same keys but computes another function (legacy
relative positions): the keys cannot tell the two apart, so convert only ``latest`` ones.
ESPnet's ``LayerNorm`` uses eps 1e-12 where speechforge uses PyTorch's 1e-5; on normalised
activations the outputs differ by about 1e-6, far inside what a converted model needs.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

from speechforge.errors import CheckpointError
from speechforge.modules.convolution import from_conv1d_layout
from speechforge.modules.multi_head_attention import merge_separate_projections

# Parameter names a speechforge ConformerBlock shares with ESPnet's EncoderLayer.
_BLOCK_PARAM = re.compile(
    r"(self_attn\.(linear_[qkv]|linear_out|linear_pos|pos_bias_[uv])"
    r"|feed_forward(_macaron)?\.w_[12]"
    r"|conv_module\.(pointwise_conv1|depthwise_conv|norm|pointwise_conv2)"
    r"|norm_(ff_macaron|mha|conv|ff|final))"
    r"\.?(weight|bias|running_mean|running_var|num_batches_tracked)?$"
)
_EMBED_CONV = re.compile(r"conv\.\d+\.(weight|bias)$")


def _convert_key(key: str) -> str | None:
    """Our name for one ESPnet encoder key, or None when we have no such parameter."""
    if key.startswith("encoders."):
        index, _, rest = key[len("encoders.") :].partition(".")
        if index.isdigit() and _BLOCK_PARAM.fullmatch(rest):
            return f"blocks.{index}.{rest}"
        return None
    if key.startswith("embed."):
        rest = key[len("embed.") :]
        if _EMBED_CONV.fullmatch(rest):
            return key
        match = re.fullmatch(r"out\.0\.(weight|bias)", rest)
        return f"embed.out.{match.group(1)}" if match else None
    if key in ("after_norm.weight", "after_norm.bias"):
        return key
    return None


def convert_espnet_conformer(state_dict: Mapping[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
    """Rename an ESPnet Conformer encoder's state dict to speechforge's names.

    Args:
        state_dict: ESPnet weights; the encoder's own ``state_dict()``, or a whole ESPnet model
            checkpoint together with ``prefix``.
        prefix: keep only keys starting with it (ESPnet model checkpoints use ``"encoder."``)
            and strip it; every key is converted when empty.
    Returns: a state dict for speechforge's ``conformer`` encoder of the same shape, to load
        with ``load_state_dict(..., strict=True)``. Tensors are shared (or viewed), not copied,
        except the concatenated ``linear_qkv`` weights and biases.
    Raises:
        CheckpointError: naming the ESPnet keys that have no speechforge counterpart (for
            example ``concat_linear`` from ``concat_after``), or when no key carries ``prefix``.
    """
    converted: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            continue
        ours = _convert_key(key[len(prefix) :])
        if ours is None:
            unknown.append(key)
        else:
            converted[ours] = value
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else "")
        raise CheckpointError(f"ESPnet Conformer keys without a speechforge counterpart: {shown}")
    if not converted:
        raise CheckpointError(f"no key of the state dict starts with prefix {prefix!r}")
    blocks = {key.split(".", 2)[1] for key in converted if key.startswith("blocks.")}
    for index in sorted(blocks):
        merge_separate_projections(converted, f"blocks.{index}.self_attn.", {}, True)
        from_conv1d_layout(converted, f"blocks.{index}.conv_module.", {}, True)
    return converted
