"""The paper's Table 2 for one model: float size, quantized size with f32 and with int8
metadata and the reduction factors, for the whole model and for the quantized layers alone,
beside the paper's figures, plus the packed file's size on disk when there is one.

The whole model is its parameters as the packed export holds them: every parameter at its own
width (biases, norms and float layers at 32 bits per value), the targets' weights at their
packed size, the layers that only training losses use (``training_only_modules``) left out.
Buffers (the fbank filterbank, normalisation statistics) are not weights: they count in the
packed file's computed size only.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from speechforge_plugins.quant.size import float_bits
from speechforge_plugins.quant.weight_quantizer import TargetWeight, WeightQuantizer, training_only_prefixes

#: Table 2 of Rybakov et al.: whole-model size in billions of bits and its reduction, with
#: (f32 metadata, int8 metadata); Exp0 is the float model.
PAPER_FLOAT_GBIT = 28.6
PAPER_TABLE_2 = {
    "Exp1": ((2.5, 11.4), (2.5, 11.4)),
    "Exp2": ((3.6, 7.9), (2.8, 10.2)),
    "Exp3": ((1.6, 17.9), (1.6, 17.9)),
    "Exp4": ((1.6, 17.9), (1.6, 17.9)),
    "Exp5": ((2.2, 13.0), (1.8, 15.9)),
}
#: the packed file and the computed size may differ by this fraction (file-format overhead)
DISK_TOLERANCE = 0.02


@dataclass(frozen=True)
class PackedFileSize:
    """The packed export on disk against the size computed for the quantizer's metadata dtype."""

    path: str
    bytes: int
    computed_bytes: int

    @property
    def difference(self) -> float:
        return self.bytes / self.computed_bytes - 1


@dataclass(frozen=True)
class SizeReport:
    """Bits of a model and of its quantized layers, float and quantized (f32 / int8 metadata)."""

    quantizer: str
    experiment: str | None  # the paper's experiment these settings are, if any
    whole_float_bits: int
    whole_f32_meta_bits: int
    whole_int8_meta_bits: int
    layers_float_bits: int
    layers_f32_meta_bits: int
    layers_int8_meta_bits: int
    quantized_weights: int  # values in the quantized weight matrices
    buffer_bits: int  # the state dict's buffers, stored beside the weights
    packed_file: PackedFileSize | None = None

    def ratios(self) -> dict[str, float]:
        """The four reduction factors (float size / quantized size)."""
        return {
            "whole_f32_meta": self.whole_float_bits / self.whole_f32_meta_bits,
            "whole_int8_meta": self.whole_float_bits / self.whole_int8_meta_bits,
            "layers_f32_meta": self.layers_float_bits / self.layers_f32_meta_bits,
            "layers_int8_meta": self.layers_float_bits / self.layers_int8_meta_bits,
        }

    def computed_bytes(self, scale_dtype: str) -> int:
        """The packed model's tensors in bytes (weights and buffers) with metadata stored as
        ``scale_dtype``."""
        weights = self.whole_f32_meta_bits if scale_dtype == "float32" else self.whole_int8_meta_bits
        return (weights + self.buffer_bits) // 8

    def as_json(self) -> dict[str, Any]:
        """One object: the reduction factors at the top, then the bits, the paper's row and the file."""
        paper = PAPER_TABLE_2.get(self.experiment or "")
        return {
            **self.ratios(),
            "quantizer": self.quantizer,
            "experiment": self.experiment,
            "bits": {k: v for k, v in asdict(self).items() if k.endswith("_bits")},
            "quantized_weights": self.quantized_weights,
            "paper": None if paper is None else {
                "float_gbit": PAPER_FLOAT_GBIT,
                "f32_meta_gbit": paper[0][0], "whole_f32_meta": paper[0][1],
                "int8_meta_gbit": paper[1][0], "whole_int8_meta": paper[1][1],
            },
            "packed_file": None if self.packed_file is None else {
                **asdict(self.packed_file), "difference": self.packed_file.difference,
            },
        }

    def markdown(self) -> str:
        """The report.md section (and what ``quant-report`` prints): a Table 2 of this model."""
        unit, scale = _unit(self.whole_float_bits)
        ratios = self.ratios()

        def row(label: str, float_: float, f32: float, f32_ratio: float, int8: float, int8_ratio: float) -> str:
            return f"| {label} | {float_:.3f} | {f32:.3f} | {f32_ratio:.1f}x | {int8:.3f} | {int8_ratio:.1f}x |"

        lines = [
            "## Quantized model size",
            "",
            f"Quantizer: {self.quantizer}"
            + (f" (the paper's {self.experiment})." if self.experiment else " (no experiment of the paper's Table 2)."),
            "",
            f"| | float [{unit}] | f32 meta [{unit}] | reduction | int8 meta [{unit}] | reduction |",
            "|---|---|---|---|---|---|",
            row("whole model", self.whole_float_bits / scale, self.whole_f32_meta_bits / scale, ratios["whole_f32_meta"],
                self.whole_int8_meta_bits / scale, ratios["whole_int8_meta"]),
            row(f"quantized layers ({self.quantized_weights / 1e6:.1f}M weights)", self.layers_float_bits / scale,
                self.layers_f32_meta_bits / scale, ratios["layers_f32_meta"], self.layers_int8_meta_bits / scale,
                ratios["layers_int8_meta"]),
        ]
        paper = PAPER_TABLE_2.get(self.experiment or "")
        if paper is not None:
            (f32, f32_ratio), (int8, int8_ratio) = paper
            lines.append(f"| paper, {self.experiment}, whole USM RNN-T [Gbit] | {PAPER_FLOAT_GBIT} | {f32} | {f32_ratio:g}x | "
                         f"{int8} | {int8_ratio:g}x |")
        lines += ["", "Weights only: biases, norms, subsampling, depthwise convolutions, predictor and joiner "
                  "count as float (32 bits per value), int8 metadata adds one float32 step per metadata "
                  f"tensor; buffers ({self.buffer_bits / scale:.3f} {unit}) are left out."]
        if self.packed_file is not None:
            file = self.packed_file
            lines += ["", f"Packed file `{file.path}`: {file.bytes:,} bytes on disk, {file.computed_bytes:,} computed "
                      f"({100 * file.difference:+.2f} %)."]
        return "\n".join(lines) + "\n"


def size_report(model: nn.Module, quantizer: WeightQuantizer, packed_file: Path | None = None) -> SizeReport:
    """Table 2 of ``model`` (built from the config without its quantizer; its parameters may be
    on the meta device) under ``quantizer``, with ``packed_file``'s size when given."""
    weights: list[TargetWeight] = quantizer.sizes(model)
    skipped = tuple(training_only_prefixes(model))
    state = {
        key: value for key, value in model.state_dict().items() if isinstance(value, Tensor) and not key.startswith(skipped)
    }
    parameters = {name for name, _ in model.named_parameters()}
    stored = {key: 8 * value.numel() * value.element_size() for key, value in state.items()}
    whole = sum(bits for key, bits in stored.items() if key in parameters)
    layers_float = sum(float_bits(w.shape) for w in weights)
    layers_f32 = sum(w.bits_f32_meta for w in weights)
    layers_int8 = sum(w.bits_int8_meta for w in weights)
    report = SizeReport(
        quantizer=quantizer.describe(),
        experiment=quantizer.paper_experiment(),
        whole_float_bits=whole,
        whole_f32_meta_bits=whole - layers_float + layers_f32,
        whole_int8_meta_bits=whole - layers_float + layers_int8,
        layers_float_bits=layers_float,
        layers_f32_meta_bits=layers_f32,
        layers_int8_meta_bits=layers_int8,
        quantized_weights=sum(math.prod(w.shape) for w in weights),
        buffer_bits=sum(bits for key, bits in stored.items() if key not in parameters),
    )
    if packed_file is None:
        return report
    computed = report.computed_bytes(quantizer.scale_dtype)
    return replace(report, packed_file=PackedFileSize(str(packed_file), packed_file.stat().st_size, computed))


def _unit(bits: int) -> tuple[str, float]:
    """The unit the table prints bits in: Gbit, Mbit or kbit."""
    for unit, scale in (("Gbit", 1e9), ("Mbit", 1e6)):
        if bits >= scale:
            return unit, scale
    return "kbit", 1e3
