"""The runtime sections of an experiment config (``data``, ``optim``, ``scheduler``,
``train``, ``decode``, ``tokenizer``), with their defaults, types and ranges (checked by
:func:`speechforge.config.parse_section`). Unknown keys are errors naming the closest valid key."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from speechforge.config import parse_section
from speechforge.value_check import Range

Positive = Range(gt=0)
NonNegative = Range(ge=0)


@dataclass
class DataOptions:
    train: str = ""  # data dir of the training set
    valid: str = ""  # data dir of the validation set ("" to skip validation)
    max_seconds: Annotated[float, Positive] = 200.0  # batch budget: longest utterance x batch size
    max_batch_size: Annotated[int, NonNegative] = 0  # 0: no cap
    max_duration: Annotated[float, Positive] = 30.0  # longer utterances are skipped
    min_duration: Annotated[float, NonNegative] = 0.2
    num_buckets: Annotated[int, Range(ge=1)] = 10
    speed_perturb: list[Annotated[float, Positive]] = field(default_factory=list)  # e.g. [0.9, 1.0, 1.1]
    num_workers: Annotated[int, NonNegative] = 1
    subset: dict[str, Any] = field(default_factory=dict)  # train on part of data.train: SubsetOptions
    unknown_characters: Literal["warn", "error"] = "warn"  # transcript characters the tokenizer maps to <unk>


@dataclass
class SubsetOptions:
    """``data.subset``: a reproducible random subset of the training set (low-resource
    fine-tuning). Give exactly one of ``fraction``, ``utterances``, ``hours``; the same
    ``seed`` picks the same utterances on every rank and on resume. Drawn from the usable
    utterances (after the duration filters), before batching and sharding."""

    fraction: Annotated[float, Range(ge=0, le=1)] = 0.0  # of the utterances, in (0, 1]
    utterances: Annotated[int, NonNegative] = 0  # how many utterances
    hours: Annotated[float, NonNegative] = 0.0  # utterances are drawn until this much audio is kept
    seed: int = 0


@dataclass
class OptimOptions:
    type: Literal["adamw", "adam", "adafactor"] = "adamw"  # adafactor: torch.optim.Adafactor (lr and weight_decay only)
    lr: Annotated[float, Positive] = 1e-3
    weight_decay: Annotated[float, NonNegative] = 1e-2
    betas: list[Annotated[float, Range(ge=0, lt=1)]] = field(default_factory=lambda: [0.9, 0.98])
    eps: Annotated[float, NonNegative] = 1e-9


@dataclass
class SchedulerOptions:
    type: Literal["constant", "noam", "linear", "cosine"] = "noam"
    warmup_steps: Annotated[int, NonNegative] = 1000
    final_lr_ratio: Annotated[float, Range(ge=0, le=1)] = 0.05  # linear/cosine: lr at the last step, relative to the peak


@dataclass
class TrainOptions:
    seed: int = 42
    max_epochs: Annotated[int, NonNegative] = 100
    max_steps: Annotated[int, NonNegative] = 0  # 0: no limit; also the horizon of linear/cosine schedules
    max_minutes: Annotated[float, NonNegative] = 0.0  # wall-clock budget; 0: none
    accum_grad: Annotated[int, Range(ge=1)] = 1
    grad_clip: Annotated[float, NonNegative] = 5.0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # fp32, bf16, fp16 (fp16 needs CUDA)
    strategy: Literal["ddp", "fsdp"] = "ddp"  # ddp or fsdp (only matters under torchrun with several processes)
    log_interval: Annotated[int, Range(ge=1)] = 10
    save_interval_steps: Annotated[int, NonNegative] = 0  # 0: only at epoch ends
    keep_checkpoints: Annotated[int, Range(ge=1)] = 5  # newest step checkpoints kept; epoch checkpoints are all kept
    max_bad_steps: Annotated[int, Range(ge=1)] = 20  # abort after this many non-finite losses in a row
    num_threads: Annotated[int, NonNegative] = 0  # torch threads per process; 0: cores / processes
    ddp_timeout_s: Annotated[float, Positive] = 1800.0  # how long a rank waits for the others in a collective
    progress_bar: bool = True
    init_from: dict[str, Any] = field(default_factory=dict)  # start from other weights: InitFromOptions


@dataclass
class InitFromOptions:
    """``train.init_from``: weights a run starts from instead of random ones, loaded when it
    starts at step 0 (never when it resumes its own checkpoint), before ``model_built`` hooks.

    ``include``/``exclude`` are globs over the checkpoint's tensor names (``encoder.*``);
    ``rename`` then maps name prefixes of the checkpoint to those of the model
    (``{backbone.: encoder.}``). Tensors that match nothing in the model are skipped; model
    tensors nothing loads keep their fresh initialization. Without ``checkpoint`` nothing is
    loaded, so a config may hold ``include``/``rename`` for a pretrained model that a recipe
    passes only when it exists (``run.sh`` stage 5)."""

    checkpoint: str = ""  # an experiment dir (its model_avg.pt, else checkpoints/latest) or a .pt file; "": start fresh
    include: list[str] = field(default_factory=lambda: ["*"])
    exclude: list[str] = field(default_factory=list)
    rename: dict[str, str] = field(default_factory=dict)


@dataclass
class TokenizerOptions:
    type: Literal["bpe", "char"] = "bpe"
    vocab_size: Annotated[int, Range(ge=1)] = 256  # bpe only; a char tokenizer counts its characters


@dataclass
class DecodeOptions:
    # searches `speechforge decode` runs; the first is every command's and API's default method
    methods: list[str] = field(default_factory=lambda: ["ctc_greedy_search", "ctc_prefix_beam_search"])
    chunk_sizes: list[int] = field(default_factory=lambda: [-1])  # -1: full context
    num_left_chunks: int = -1
    beam_size: Annotated[int, Range(ge=1)] = 10  # for every method whose factory takes a beam_size
    # longer utterances are refused (full attention over them needs memory quadratic in the
    # length): `decode` counts them with an empty hypothesis, `transcribe` raises; 0: no limit
    max_utterance_seconds: Annotated[float, NonNegative] = 300.0
    # METHOD: {key: value}, keyword arguments of that search's factory (over beam_size above)
    options: dict[str, dict[str, Any]] = field(default_factory=dict)


def check_runtime_sections(config: Mapping[str, Any]) -> None:
    """Check every runtime section the core reads (``data``, ``optim``, ``scheduler``,
    ``train``, ``decode``, ``tokenizer`` and their nested ``subset``/``init_from``) against its
    dataclass, so ``speechforge config show`` and the start of ``train`` refuse a bad value
    (``optim.lr: expected a number > 0, got 'fast'``) before any work is done."""
    from speechforge.decode.search_options import read_decode_options

    data = parse_section(DataOptions, config, "data")
    if data.subset:
        parse_section(SubsetOptions, {"data.subset": data.subset}, "data.subset")
    parse_section(OptimOptions, config, "optim")
    parse_section(SchedulerOptions, config, "scheduler")
    train = parse_section(TrainOptions, config, "train")
    if train.init_from:
        parse_section(InitFromOptions, {"train.init_from": train.init_from}, "train.init_from")
    read_decode_options(config)
    parse_section(TokenizerOptions, config, "tokenizer")
