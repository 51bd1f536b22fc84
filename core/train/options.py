"""The runtime sections of an experiment config (``data``, ``optim``, ``scheduler``,
``train``, ``decode``), with their defaults. Unknown keys are errors naming the closest valid key."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class DataOptions:
    train: str = ""  # data dir of the training set
    valid: str = ""  # data dir of the validation set ("" to skip validation)
    max_seconds: float = 200.0  # batch budget: longest utterance x batch size
    max_batch_size: int = 0  # 0: no cap
    max_duration: float = 30.0  # longer utterances are skipped
    min_duration: float = 0.2
    num_buckets: int = 10
    speed_perturb: list[float] = field(default_factory=list)  # e.g. [0.9, 1.0, 1.1]
    num_workers: int = 1
    subset: dict[str, Any] = field(default_factory=dict)  # train on part of data.train: SubsetOptions


@dataclass
class SubsetOptions:
    """``data.subset``: a reproducible random subset of the training set (low-resource
    fine-tuning). Give exactly one of ``fraction``, ``utterances``, ``hours``; the same
    ``seed`` picks the same utterances on every rank and on resume. Drawn from the usable
    utterances (after the duration filters), before batching and sharding."""

    fraction: float = 0.0  # of the utterances, in (0, 1]
    utterances: int = 0  # how many utterances
    hours: float = 0.0  # utterances are drawn until this much audio is kept
    seed: int = 0


@dataclass
class OptimOptions:
    type: str = "adamw"  # adamw, adam or adafactor (torch.optim.Adafactor; lr and weight_decay only)
    lr: float = 1e-3
    weight_decay: float = 1e-2
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-9


@dataclass
class SchedulerOptions:
    type: str = "noam"  # constant, noam, linear, cosine
    warmup_steps: int = 1000
    final_lr_ratio: float = 0.05  # linear/cosine: lr at the last step, relative to the peak


@dataclass
class TrainOptions:
    seed: int = 42
    max_epochs: int = 100
    max_steps: int = 0  # 0: no limit; also the horizon of linear/cosine schedules
    max_minutes: float = 0.0  # wall-clock budget; 0: none
    accum_grad: int = 1
    grad_clip: float = 5.0
    precision: str = "fp32"  # fp32, bf16, fp16 (fp16 needs CUDA)
    strategy: str = "ddp"  # ddp or fsdp (only matters under torchrun with several processes)
    log_interval: int = 10
    save_interval_steps: int = 0  # 0: only at epoch ends
    keep_checkpoints: int = 5  # newest step checkpoints kept; epoch checkpoints are all kept
    max_bad_steps: int = 20  # abort after this many non-finite losses in a row
    num_threads: int = 0  # torch threads per process; 0: cores / processes
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
class DecodeOptions:
    # searches `speechforge decode` runs; the first is every command's and API's default method
    methods: list[str] = field(default_factory=lambda: ["ctc_greedy_search", "ctc_prefix_beam_search"])
    chunk_sizes: list[int] = field(default_factory=lambda: [-1])  # -1: full context
    num_left_chunks: int = -1
    beam_size: int = 10  # for every method whose factory takes a beam_size
    # METHOD: {key: value}, keyword arguments of that search's factory (over beam_size above)
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
