"""``optimize_for_cpu_inference``: swap a model's plain layers for their CPU inference forms.

Model code holds plain torch layers and calls them as modules, so whatever replaces or
parametrizes a layer (``torch.ao.quantization.prepare_qat``, LoRA, a quantizer plugin,
``torch.nn.utils.parametrize``) takes effect on every path. The speed that oneDNN gives CPU
inference comes from this explicit step instead, as ``ipex.optimize`` does for IPEX:

- every plain ``nn.Linear`` becomes a :class:`~speechforge.modules.packed_linear.PackedLinear`
  (the weight reordered here, once, into oneDNN's blocked layout; the bias added in the
  matmul);
- where a module declares ``fusable_activations``, pairs of attribute names ``(layer,
  activation)`` whose activation directly follows the layer in its ``forward``, the activation
  is fused into the layer's form (``PackedLinear`` for a Linear, a
  :class:`~speechforge.modules.channels_last_conv1d.ChannelsLastConv1d` for a Conv1d) and
  the attribute becomes ``nn.Identity``;
- a module with its own inference form defines ``cpu_inference_form() -> nn.Module`` and is
  replaced by what it returns (the MoE expert bank packs its stacked expert weights so).

A layer that is not plain is left as it is: a subclass or any other class standing in for
the layer (a swapped module), a parametrized module, or one with forward hooks (observers).
Parameters are shared with the replaced layers under the same names, so the state dict keeps
its keys and values, and every inference form falls back to the plain computation where its
kernel does not apply (a gradient is needed, autocast, another device).
"""
from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils import parametrize

from speechforge.modules.channels_last_conv1d import ChannelsLastConv1d
from speechforge.modules.packed_linear import PackedLinear

#: activations that the inference forms apply in the matmul's or convolution's epilogue
FUSABLE_ACTIVATIONS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.SiLU, nn.GELU)
#: rows per call that the packed layouts are chosen for (about one utterance of frames)
ROWS_HINT = 256


def optimize_for_cpu_inference(model: nn.Module, *, inplace: bool = False, rows_hint: int = ROWS_HINT) -> nn.Module:
    """``model`` in evaluation mode with its plain layers swapped for CPU inference forms.

    Args:
        model: any module tree.
        inplace: transform ``model`` itself (for a model kept only to run inference, such as a
            Recognizer's); by default a deep copy is transformed and ``model``, e.g. the one
            being trained, is untouched.
        rows_hint: about how many rows (frames x batch) a linear layer sees per call; oneDNN
            picks the packed layout for it (any row count gives the same result).
    Returns: the transformed model (``model`` itself when ``inplace``, unless ``model`` is
    itself a replaceable layer), in ``eval()`` mode; its outputs equal ``model``'s up to
    float rounding.
    """
    if not inplace:
        model = copy.deepcopy(model)
    replacement = _inference_form(model.eval())
    if replacement is model:
        _transform(model)
    for module in replacement.modules():
        if isinstance(module, PackedLinear):
            module.prepack(rows_hint)
    return replacement


def is_plain(module: nn.Module, kind: type[nn.Module]) -> bool:
    """Whether ``module`` is exactly a ``kind`` (no subclass, no stand-in), not parametrized
    and without forward hooks, i.e. a layer the transform may replace."""
    return (
        type(module) is kind
        and not parametrize.is_parametrized(module)
        and not (module._forward_hooks or module._forward_pre_hooks)
    )


def _transform(module: nn.Module) -> None:
    _fuse_activations(module)
    for name, child in list(module.named_children()):
        replacement = _inference_form(child)
        if replacement is not child:
            setattr(module, name, replacement)
        else:
            _transform(child)


def _inference_form(module: nn.Module) -> nn.Module:
    """The CPU inference form of one module, or the module itself."""
    if is_plain(module, nn.Linear):
        return PackedLinear(module).eval()
    own_form = getattr(module, "cpu_inference_form", None)
    if callable(own_form) and not parametrize.is_parametrized(module):
        return own_form()
    return module


def _fuse_activations(module: nn.Module) -> None:
    """Fuse each declared (layer, activation) pair of ``module`` whose two parts are plain."""
    for layer_name, activation_name in getattr(module, "fusable_activations", ()):
        layer, activation = getattr(module, layer_name), getattr(module, activation_name)
        if type(activation) not in FUSABLE_ACTIVATIONS or activation._forward_hooks or activation._forward_pre_hooks:
            continue
        if is_plain(layer, nn.Linear):
            fused: nn.Module = PackedLinear(layer, activation)
        elif is_plain(layer, nn.Conv1d) and layer.padding_mode == "zeros" and not isinstance(layer.padding, str):
            fused = ChannelsLastConv1d(layer, activation)
        else:
            continue
        setattr(module, layer_name, fused.eval())
        setattr(module, activation_name, nn.Identity())
