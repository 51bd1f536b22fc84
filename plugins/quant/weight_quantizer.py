"""The base of the plugin's model-level quantizers: fake quantization of the targets for
training (``prepare``), their packed form for inference (``export``, ``packed_form``) and the
sizes the report counts.

A target's packed stand-in sits where its weight's name points (:meth:`QuantTarget.weight_name`):
a linear layer is swapped whole for a :class:`PackedLinear` (its bias inside), an expert bank's
stacked weight for a :class:`PackedExpertBank` (the layer's biases and router stay as they are)."""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn
from torch.nn.utils import parametrize

from speechforge.errors import ConfigError
from speechforge.interfaces import Quantizer
from speechforge_plugins.quant.metadata_codec import check_metadata_dtype
from speechforge_plugins.quant.packed_expert_bank import PackedExpertBank
from speechforge_plugins.quant.packed_linear import PackedLinear
from speechforge_plugins.quant.size import quantized_bits
from speechforge_plugins.quant.targets import QuantTarget, select_targets
from speechforge_plugins.quant.weight_fake_quantizer import WeightFakeQuantizer

#: the sub-channel block width of the paper's Exp2 and Exp5
PAPER_BLOCK_SIZE = 64


@dataclass(frozen=True)
class TargetWeight:
    """One quantized weight as the size report counts it.

    Attributes:
        name: the weight's name (:meth:`QuantTarget.weight_name`).
        shape: (..., O, I).
        bits_f32_meta: its packed size in bits with float32 metadata.
        bits_int8_meta: the same with int8 metadata (double quantization).
    """

    name: str
    shape: tuple[int, ...]
    bits_f32_meta: int
    bits_int8_meta: int


class WeightQuantizer(Quantizer):
    """Fake quantization of every target weight by one :class:`WeightFakeQuantizer` each
    (a ``torch.nn.utils.parametrize`` parametrization, so the layers keep calling themselves as
    modules and ``parametrizations.weight.original`` holds the float weight), packed at export.

    Args:
        targets: glob patterns over module names (see :mod:`~speechforge_plugins.quant.targets`);
            None for the paper's default.
        bits: bits per weight.
        block_size: sub-channel block width along the contraction dim; None per channel.
        scale_dtype: ``float32`` or ``int8`` storage of the metadata.
    """

    #: the registered name (``quantizer.type``)
    name: ClassVar[str]
    #: metadata values per block (scale; scale and zero point)
    metadata_per_block: ClassVar[int]
    #: whether the packed codes are affine levels with a zero point (else signs)
    zero_point: ClassVar[bool]

    def __init__(self, *, targets: Sequence[str] | None, bits: int, block_size: int | None, scale_dtype: str) -> None:
        self.targets = None if targets is None else list(targets)
        self.bits = bits
        self.block_size = block_size
        self.scale_dtype = check_metadata_dtype(scale_dtype, "quantizer.scale_dtype")

    @abstractmethod
    def fake_quantizer(self, weight: Tensor, name: str) -> WeightFakeQuantizer:
        """The fake quantizer of one weight (..., O, I) named ``name``."""

    @abstractmethod
    def paper_experiment(self) -> str | None:
        """The experiment of the paper's Table 2 these settings are (``Exp5``), or None."""

    def describe(self) -> str:
        """The settings in words, e.g. ``absmean_binary, 1 bit, blocks of 64, float32 metadata``."""
        blocks = "per channel" if self.block_size is None else f"blocks of {self.block_size}"
        return f"{self.name}, {self.bits} bit{'s' if self.bits > 1 else ''}, {blocks}, {self.scale_dtype} metadata"

    def select(self, model: nn.Module) -> list[QuantTarget]:
        """The model's targets."""
        return select_targets(model, self.targets)

    def target_weights(self, model: nn.Module) -> Iterator[tuple[QuantTarget, str, Tensor]]:
        """(target, parameter name, weight) of every weight to quantize."""
        for target in self.select(model):
            for weight in target.weights:
                yield target, weight, getattr(target.module, weight)

    def prepare(self, model: nn.Module) -> nn.Module:
        for target, weight_name, weight in list(self.target_weights(model)):
            if parametrize.is_parametrized(target.module, weight_name):
                raise ConfigError(f"{target.weight_name(weight_name)}: already parametrized; a model is prepared once")
            quantizer = self.fake_quantizer(weight, target.weight_name(weight_name))
            parametrize.register_parametrization(target.module, weight_name, quantizer)
        return model

    def export(self, model: nn.Module) -> dict[str, Tensor]:
        state = model.state_dict()
        for target in self.select(model):
            for weight_name in target.weights:
                path = target.weight_name(weight_name)
                # a linear: all of its keys; a bank's weight: its float original (and grid)
                stale = (f"{path}.", f"{target.name}.parametrizations.{weight_name}.")
                for key in [key for key in state if key.startswith(stale)]:
                    del state[key]
                if isinstance(target.module, nn.Linear):
                    packed: nn.Module = PackedLinear.from_parametrized(target.module)
                else:
                    packed = PackedExpertBank.from_parametrized(target.module, weight_name)
                state.update({f"{path}.{key}": value for key, value in packed.state_dict().items()})
        for prefix in training_only_prefixes(model):
            for key in [key for key in state if key.startswith(prefix)]:
                del state[key]
        return state

    def packed_form(self, model: nn.Module) -> nn.Module:
        for target, weight_name, weight in list(self.target_weights(model)):
            name = target.weight_name(weight_name)
            replace_module(model, name, self._empty_packed(target.module, weight, name))
        for prefix in training_only_prefixes(model):
            replace_module(model, prefix[:-1], None)
        return model

    def _empty_packed(self, module: nn.Module, weight: Tensor, name: str) -> nn.Module:
        """The empty packed stand-in (meta buffers) for ``weight`` (named ``name``) of
        ``module``: a PackedLinear for a linear layer, a PackedExpertBank for a stacked
        (E, O, I) weight."""
        settings = {
            "bits": self.bits,
            "block_size": self.block_size,
            "scale_dtype": self.scale_dtype,
            "zero_point": self.zero_point,
            "device": "meta",
        }
        if isinstance(module, nn.Linear):
            return PackedLinear(module.in_features, module.out_features, bias=module.bias is not None, **settings)
        if weight.dim() != 3:
            raise ConfigError(f"{name}: a packed expert bank is an (E, O, I) stack, got shape {tuple(weight.shape)}")
        return PackedExpertBank(*weight.shape, **settings)

    def sizes(self, model: nn.Module) -> list[TargetWeight]:
        """Every target weight with its packed size for both metadata dtypes (the model need
        not be prepared; its parameters may be on the meta device)."""
        rows = []
        for target, weight_name, weight in self.target_weights(model):
            name, shape = target.weight_name(weight_name), tuple(weight.shape)
            bits = {
                dtype: quantized_bits(
                    shape,
                    bits=self.bits,
                    block_size=self.block_size,
                    metadata_per_block=self.metadata_per_block,
                    metadata_dtype=dtype,
                    name=name,
                )
                for dtype in ("float32", "int8")
            }
            rows.append(TargetWeight(name, shape, bits["float32"], bits["int8"]))
        return rows


def training_only_prefixes(model: nn.Module) -> list[str]:
    """``name.`` of every child that a module lists in ``training_only_modules`` (layers only
    training losses use, left out of the packed model)."""
    prefixes = []
    for name, module in model.named_modules():
        for child in getattr(module, "training_only_modules", ()):
            if getattr(module, child, None) is not None:
                prefixes.append(f"{name}.{child}." if name else f"{child}.")
    return prefixes


def replace_module(model: nn.Module, name: str, replacement: nn.Module | None) -> None:
    """Set the submodule ``name`` (dotted) of ``model`` to ``replacement``; a parameter of that
    name (an expert bank's stacked weight) gives way to it."""
    parent, _, child = name.rpartition(".")
    owner = model.get_submodule(parent) if parent else model
    if child in owner._parameters:
        delattr(owner, child)
    setattr(owner, child, replacement)
