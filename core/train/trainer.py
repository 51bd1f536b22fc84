"""The training loop: dynamic batches, gradient accumulation, mixed precision, non-finite
step skipping, atomic checkpoints with exact resume, DDP/FSDP under torchrun.

Resuming is exact: a checkpoint holds the model, optimizer, scheduler, gradient scaler, the
global RNG states and the position in the epoch; batch order comes from (seed, epoch) and the
data loader draws its worker seeds from its own generator, so a run killed and resumed ends
with the same parameters as one that never stopped.
"""
from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from functools import partial
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from speechforge.builder import build_model, task_needs_transcripts
from speechforge.config import parse_section, save_config
from speechforge.data.data_dir import Utterance, read_data_dir
from speechforge.data.duration_batch_sampler import DurationBatchSampler
from speechforge.data.speech_dataset import Batch, SkipCounter, SpeechDataset, collate, filter_utterances
from speechforge.data.subset import check_subset, take_subset
from speechforge.errors import ConfigError, DataError, SpeechforgeError
from speechforge.interfaces import Progress
from speechforge.plugins import PluginHost, default_host
from speechforge.text.tokenizer import Tokenizer, load_tokenizer
from speechforge.text.unknown_characters import describe_unknown, unknown_characters
from speechforge.train.checkpointer import Checkpointer
from speechforge.train.distributed import DistributedContext, all_reduce_flag, all_reduce_sum, init_distributed
from speechforge.train.init_from import init_from
from speechforge.train.optimizer import make_optimizer
from speechforge.train.options import DataOptions, InitFromOptions, OptimOptions, SchedulerOptions, SubsetOptions, TrainOptions, check_runtime_sections
from speechforge.train.parallel_strategy import make_strategy
from speechforge.train.run_log import RunLog
from speechforge.train.scheduler import Schedule, make_scheduler
from speechforge.train.training_state import TrainingState

log = logging.getLogger(__name__)
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class TrainingAborted(SpeechforgeError):
    """Too many non-finite losses in a row."""


def experiment_config(config: Mapping[str, Any], exp_dir: Path, tokenizer: Tokenizer | None) -> dict[str, Any]:
    """The config as it runs: vocab size from the tokenizer (when the task uses one), CMVN
    stats from the exp dir."""
    config = dict(config)
    if tokenizer is not None:
        config["vocab_size"] = tokenizer.vocab_size
    cmvn = exp_dir / "cmvn.json"
    frontend = dict(config.get("frontend") or {"type": "fbank"})
    if cmvn.is_file() and "cmvn_stats" not in frontend:
        frontend["cmvn_stats"] = str(cmvn.resolve())
    config["frontend"] = frontend
    return config


class Trainer:
    """Trains the model an experiment config describes, in ``exp_dir``.

    With ``resume`` it continues from ``checkpoints/latest`` when there is one; a run that
    starts at step 0 instead loads ``train.init_from`` (when it names a checkpoint) before the
    ``model_built`` hooks run.
    """

    def __init__(self, config: Mapping[str, Any], exp_dir: Path, host: PluginHost | None = None, resume: bool = False) -> None:
        self.exp_dir = Path(exp_dir)
        self.host = host or default_host()
        check_runtime_sections(config)
        self.data_opts = parse_section(DataOptions, config, "data")
        self.optim_opts = parse_section(OptimOptions, config, "optim")
        self.sched_opts = parse_section(SchedulerOptions, config, "scheduler")
        self.opts = parse_section(TrainOptions, config, "train")
        self.init_opts = parse_section(InitFromOptions, {"train.init_from": self.opts.init_from}, "train.init_from")
        self.subset_opts = parse_section(SubsetOptions, {"data.subset": self.data_opts.subset}, "data.subset") if self.data_opts.subset else None
        if self.subset_opts is not None:
            check_subset(self.subset_opts)
        if self.opts.precision not in PRECISIONS:
            raise ConfigError(f"train.precision: one of {', '.join(PRECISIONS)}, got {self.opts.precision!r}")
        if not self.data_opts.train:
            raise ConfigError("data.train: missing; the data dir to train on")
        self.ctx: DistributedContext = init_distributed(self.opts.ddp_timeout_s)
        torch.set_num_threads(self.opts.num_threads or max(1, (torch.get_num_threads() or 1) // self.ctx.world_size))
        torch.manual_seed(self.opts.seed)
        random.seed(self.opts.seed)
        self.transcripts = task_needs_transcripts(config, self.host)
        self.tokenizer = load_tokenizer(self.exp_dir / "tokenizer") if self.transcripts else None
        self.config = experiment_config(config, self.exp_dir, self.tokenizer)
        resuming = resume and (self.exp_dir / "checkpoints" / "latest").is_file()
        initialize = partial(init_from, options=self.init_opts) if self.init_opts.checkpoint and not resuming else None
        self.model = build_model(self.config, self.host, initialize).to(self.ctx.device)
        self.sample_rate = int(getattr(self.model, "frontend").sample_rate)
        self.skips = SkipCounter()
        self.empty_steps = 0  # under DDP: steps every rank skipped, a batch of one holding no usable utterance
        self.train_loader, self.sampler = self._loader(self.data_opts.train, training=True)
        self.valid_loader = self._loader(self.data_opts.valid, training=False)[0] if self.data_opts.valid else None
        self.strategy = make_strategy(self.opts.strategy, self.ctx)
        self.wrapped = self.strategy.wrap(self.model)  # before the optimizer: FSDP replaces parameters
        self.optimizer = self._optimizer()
        self.steps_per_epoch = max(1, len(self.sampler) // self.opts.accum_grad)
        horizon = self.opts.max_steps or self.steps_per_epoch * self.opts.max_epochs
        self.schedule = Schedule(self.sched_opts.type, self.sched_opts.warmup_steps, horizon, self.sched_opts.final_lr_ratio)
        self.scheduler = make_scheduler(self.optimizer, self.schedule)
        self.autocast_dtype = PRECISIONS[self.opts.precision]
        self.scaler = torch.amp.GradScaler(self.ctx.device.type, enabled=self.opts.precision == "fp16")
        self.state = TrainingState()
        self.checkpointer = Checkpointer(
            self.exp_dir / "checkpoints",
            self.strategy,
            self.model,
            self.optimizer,
            self.scheduler,
            self.scaler,
            self.host,
            self.opts.keep_checkpoints,
            self.ctx.is_main,
        )
        if resuming:
            self.resume()  # a checkpoint that does not fit fails here, before anything is written
        if self.ctx.is_main:
            save_config(self.config, self.exp_dir / "config.yaml")

    # -- set-up ---------------------------------------------------------------------------------
    def _loader(self, data_dir: str, training: bool) -> tuple[DataLoader, DurationBatchSampler]:
        utterances = read_data_dir(Path(data_dir), self.transcripts)
        kept = filter_utterances(utterances, self.data_opts.max_duration, self.data_opts.min_duration, self.skips, self.transcripts)
        if not kept:
            raise ConfigError(f"data.{'train' if training else 'valid'}: no usable utterances in {data_dir}")
        if training and self.subset_opts is not None:
            kept = take_subset(kept, self.subset_opts)
        if training and self.tokenizer is not None:
            self._check_characters(kept, data_dir)
        dataset = SpeechDataset(
            kept,
            self.tokenizer,
            self.sample_rate,
            self.data_opts.speed_perturb if training else (),
            self.opts.seed,
        )
        sampler = DurationBatchSampler(
            [u.duration for u in kept],
            self.data_opts.max_seconds,
            self.data_opts.num_buckets,
            shuffle=training,
            seed=self.opts.seed,
            rank=self.ctx.rank,
            world_size=self.ctx.world_size,
            max_batch_size=self.data_opts.max_batch_size,
        )
        loader = DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=self.data_opts.num_workers,
            generator=torch.Generator().manual_seed(self.opts.seed),
            persistent_workers=False,
        )
        return loader, sampler

    def _check_characters(self, utterances: list[Utterance], data_dir: str) -> None:
        """Count the transcript characters the tokenizer cannot write; ``data.unknown_characters``
        says whether that is a warning or an error."""
        assert self.tokenizer is not None
        unknown = unknown_characters(self.tokenizer, (u.text for u in utterances))
        if not unknown:
            return
        message = describe_unknown(self.tokenizer, unknown, f"{data_dir}/text")
        if self.data_opts.unknown_characters == "error":
            raise DataError(f"{message} (data.unknown_characters: error)")
        if self.ctx.is_main:
            log.warning("%s", message)

    def _optimizer(self) -> torch.optim.Optimizer:
        return make_optimizer(self.optim_opts, self.model.parameters())

    # -- checkpoints ----------------------------------------------------------------------------
    def save(self, name: str) -> Path:
        """Write ``checkpoints/<name>.pt`` (rank 0) and point ``checkpoints/latest`` at it."""
        return self.checkpointer.save(name, self.state)

    def resume(self) -> bool:
        """Continue from ``checkpoints/latest``; False when there is nothing to resume."""
        state = self.checkpointer.resume()
        if state is None:
            return False
        self.state = state
        return True

    # -- loop -----------------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.ctx.device.type, dtype=self.autocast_dtype)

    def progress(self) -> Progress:
        """The run's position now, as hooks and losses see it; brings the schedule's share of
        the wall-clock budget up to date on the way, so both follow the same fraction."""
        if self.opts.max_minutes:
            self.schedule.time_fraction = self.state.elapsed / (60 * self.opts.max_minutes)
        return Progress(self.state.step, self.state.epoch, self.schedule.total_steps, self.schedule.fraction(self.state.step))

    def _out_of_budget(self) -> bool:
        done = (self.opts.max_steps and self.state.step >= self.opts.max_steps) or (
            self.opts.max_minutes and self.state.elapsed >= 60 * self.opts.max_minutes
        )
        return all_reduce_flag(bool(done), self.ctx)

    def train(self) -> None:
        """Run epochs until ``max_epochs``, ``max_steps`` or ``max_minutes``."""
        state = self.state
        run_log = RunLog(self.exp_dir, self.ctx.is_main, self.opts.log_interval, self.opts.progress_bar)
        bad_in_a_row = 0
        clock_start, elapsed_before = time.perf_counter(), state.elapsed
        while state.epoch < self.opts.max_epochs and not self._out_of_budget():
            self.sampler.set_epoch(state.epoch, state.batch_in_epoch)
            self.train_loader.dataset.epoch = state.epoch
            self.train_loader.generator.manual_seed(self.opts.seed * 1000 + state.epoch)
            self.wrapped.train()
            run_log.start_epoch(state.epoch, len(self.sampler) // self.opts.accum_grad)
            window: list[Batch] = []
            for batch in self.train_loader:
                state.batch_in_epoch += 1
                for skipped in batch.skipped:
                    self.skips.add(skipped)
                if not batch.utt_ids and not self.ctx.enabled:  # every utterance was skipped (and counted)
                    continue
                window.append(batch)  # under DDP empty ones too: every rank's windows end together
                if len(window) < self.opts.accum_grad:
                    continue
                empty = self._ranks_with_an_empty_batch(window)
                if empty:
                    self.empty_steps += 1
                    if self.ctx.is_main and self.empty_steps <= self.skips.show:
                        log.warning("step %d: a batch of rank %s holds no usable utterance; skipped on every rank", state.step + 1, ", ".join(map(str, empty)))
                    window = []
                    continue
                started = time.perf_counter()
                losses, finite = self._optimizer_step(window)
                state.elapsed = elapsed_before + time.perf_counter() - clock_start
                seconds = sum(float(b.speech_lens.sum()) for b in window) / self.sample_rate
                window = []
                if not finite:
                    bad_in_a_row += 1
                    log.warning("step %d: non-finite loss or gradient norm, step skipped (%d in a row)", state.step + 1, bad_in_a_row)
                    if bad_in_a_row >= self.opts.max_bad_steps:
                        raise TrainingAborted(f"{bad_in_a_row} non-finite losses in a row at step {state.step}; lower optim.lr or check the data")
                    continue
                bad_in_a_row = 0
                state.step += 1
                extra = self.host.hook.after_train_step(model=self.model, step=state.step, losses=losses, progress=self.progress())
                speed = seconds / max(1e-9, time.perf_counter() - started)
                run_log.step(state.epoch, state.step, state.elapsed, self.scheduler.get_last_lr()[0], speed, losses, extra)
                if self.opts.save_interval_steps and state.step % self.opts.save_interval_steps == 0:
                    self.save(f"step_{state.step}")
                if self._out_of_budget():
                    break
            run_log.end_epoch()
            epoch_finished = state.batch_in_epoch >= len(self.sampler) + self.sampler.start_batch
            if not epoch_finished:
                self._end_in_partial_epoch(run_log)
                break
            valid = self.validate()
            state.elapsed = elapsed_before + time.perf_counter() - clock_start
            state.epoch += 1
            state.batch_in_epoch = 0
            run_log.validation(state.epoch, state.step, state.elapsed, valid)
            self.save(f"epoch_{state.epoch}")
        if self.skips.total():
            log.warning("skipped %d utterances: %s", self.skips.total(), dict(self.skips.counts))
        if self.empty_steps and self.ctx.is_main:
            log.warning("skipped %d steps on every rank: a batch of some rank held no usable utterance", self.empty_steps)
        run_log.close()

    def _end_in_partial_epoch(self, run_log: RunLog) -> None:
        """The budget ran out mid-epoch: the model trained so far is the run's final one, so it
        is validated and kept as ``epoch_<k>.pt`` (k the unfinished epoch, marked ``partial``
        in the log) for averaging and decoding. Its progress stays mid-epoch and the RNG is
        restored after validation, so ``--resume`` with a larger budget carries on exactly as
        if the run had not stopped, then overwrites ``epoch_<k>.pt`` with the whole epoch."""
        rng = torch.get_rng_state(), random.getstate()
        valid = self.validate()
        torch.set_rng_state(rng[0])
        random.setstate(rng[1])
        run_log.validation(self.state.epoch + 1, self.state.step, self.state.elapsed, valid, partial=True)
        self.save(f"epoch_{self.state.epoch + 1}")

    def _ranks_with_an_empty_batch(self, window: list[Batch]) -> list[int]:
        """The ranks whose accumulation window holds a batch of only skipped utterances.

        Under DDP or FSDP every rank then skips the step, so all run the same collectives: a
        rank with nothing to run would leave the others waiting in the gradient all-reduce
        (and, under FSDP, in each forward's parameter all-gather). Always [] in one process,
        whose empty batches never enter a window."""
        if not self.ctx.enabled:
            return []
        flags = [0.0] * self.ctx.world_size
        flags[self.ctx.rank] = float(not all(batch.utt_ids for batch in window))
        return [rank for rank, flag in enumerate(all_reduce_sum(flags, self.ctx)) if flag]

    def _optimizer_step(self, window: list[Batch]) -> tuple[dict[str, float], bool]:
        """Forward/backward over the accumulated micro-batches, then one optimizer step.

        Returns the loss parts averaged over the window, and whether every rank saw finite
        losses and a finite gradient norm (otherwise nothing is updated on any rank).
        """
        progress = self.progress()
        self.host.hook.before_train_step(model=self.model, step=self.state.step, progress=progress)
        self.optimizer.zero_grad(set_to_none=True)
        totals: dict[str, float] = {}
        finite = True
        for i, batch in enumerate(window):
            context = self.strategy.sync_context(self.wrapped, sync=i == len(window) - 1)
            with context, self._autocast():
                out = self.wrapped(batch.model_inputs(self.ctx.device), progress=progress)
            loss = out["loss"]
            if not torch.isfinite(loss):
                finite = False
                loss = loss.nan_to_num(0.0, 0.0, 0.0) * 0.0  # keep DDP's gradient sync in step
            with context:
                self.scaler.scale(loss / len(window)).backward()
            for name, value in out.items():
                totals[name] = totals.get(name, 0.0) + float(value.detach()) / len(window)
        finite = not all_reduce_flag(not finite, self.ctx)
        if not finite:
            self.optimizer.zero_grad(set_to_none=True)
            return totals, False
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.opts.grad_clip or math.inf)
        if self.opts.grad_clip > 0:
            totals["grad_norm"] = float(norm)
        # fp16's scaler skips an overflowing step itself (and lowers its scale); otherwise a
        # non-finite gradient with a finite loss would write NaN into every weight
        if not self.scaler.is_enabled() and all_reduce_flag(not bool(torch.isfinite(norm)), self.ctx):
            self.optimizer.zero_grad(set_to_none=True)
            return totals, False
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.progress()  # the schedule's time fraction, from the elapsed time
        self.scheduler.step()
        return totals, True

    @torch.no_grad()
    def validate(self) -> dict[str, float] | None:
        """Every key of the forward output averaged per utterance over the validation set (all
        ranks), or None without a validation set. Batches with a non-finite loss are left out."""
        if self.valid_loader is None:
            return None
        self.wrapped.eval()
        progress = self.progress()
        totals: dict[str, float] = {"loss": 0.0}
        count = 0
        for batch in self.valid_loader:
            if not batch.utt_ids:
                continue
            with self._autocast():
                out = self.model(batch.model_inputs(self.ctx.device), progress=progress)
            if torch.isfinite(out["loss"]):
                for name, value in out.items():
                    totals[name] = totals.get(name, 0.0) + float(value) * len(batch.utt_ids)
                count += len(batch.utt_ids)
        names = sorted(totals)
        *sums, count = all_reduce_sum([totals[n] for n in names] + [float(count)], self.ctx)
        self.wrapped.train()
        values = {name: total / count if count else math.nan for name, total in zip(names, sums)}
        log.info("epoch %d: validation loss %.4f", self.state.epoch + 1, values["loss"])
        return values
