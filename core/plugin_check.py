"""``speechforge plugins --check DISTRIBUTION``: is an installed plugin package wired right?

Four things are checked, each problem reported by name:

1. every entry point of the distribution in ``speechforge.plugins`` loaded (an import error, a
   misspelt hook name, a component name another plugin owns fail the plugin at load time);
2. every ``@speechforge.hookimpl`` in the distribution's modules names a hook spec and is
   reachable from its entry-point module (a hook defined in a module the entry point does not
   import is never called);
3. every component of a kind with a shape contract builds from its defaults with the standard
   probe context (:data:`PROBE_CONTEXT`, listed in ``docs/writing_plugins.md``) and runs one
   forward pass of its kind's contract shapes;
4. components of other kinds, or with required keys, are reported as "not probed".
"""
from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from speechforge.errors import ConfigError, PluginError
from speechforge.hookspecs import PROJECT
from speechforge.interfaces import Attention, Encoder, EncoderBlock, FeedForward, Frontend
from speechforge.plugins import ENTRY_POINT_GROUP, PluginHost
from speechforge.registry import Component, closest

#: The context each probed kind's factory is offered, as an encoder or model would offer it.
PROBE_CONTEXT: dict[str, dict[str, Any]] = {
    "frontend": {},
    "ffn": {"d_model": 16},
    "attention": {"d_model": 16, "heads": 4},
    "encoder_block": {
        "d_model": 16, "heads": 4, "ffn": {"type": "dense", "hidden": 32}, "attention": {"type": "mha"},
        "dropout": 0.0, "causal": False,
    },
    "encoder": {"input_dim": 20},
    "loss": {"vocab_size": 12, "encoder_dim": 16},
}
#: The model a loss is probed in (its ``losses`` replaced by the loss alone).
PROBE_MODEL = {
    "vocab_size": 12,
    "frontend": {"type": "fbank", "num_mel_bins": 20},
    "encoder": {
        "type": "conformer", "d_model": 16, "heads": 4, "num_blocks": 1,
        "ffn": {"type": "dense", "hidden": 32}, "encoder_block": {"type": "conformer", "conv_kernel": 3},
    },
}


@dataclass
class CheckReport:
    """What ``--check`` found: ``lines`` to print, ``problems`` (each naming its plugin, hook,
    module or component); the check passes when there are none."""

    distribution: str
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def problem(self, message: str) -> None:
        self.problems.append(message)
        self.lines.append(f"  PROBLEM: {message}")


def normalized(name: str) -> str:
    """A distribution name as packaging compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def check_distribution(host: PluginHost, distribution: str) -> CheckReport:
    """Check the installed ``distribution`` against ``host`` (which loaded every plugin)."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise PluginError(f"{distribution}: no such distribution is installed") from None
    report = CheckReport(dist.metadata["Name"])
    entry_points = [ep for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP]
    report.lines.append(f"{report.distribution} {dist.version}: {len(entry_points)} plugin entry point(s)")
    if not entry_points:
        report.problem(f"declares no entry point in the group {ENTRY_POINT_GROUP!r}, so speechforge never loads it")
    modules = []
    for ep in entry_points:
        report.lines.append(f"plugin {ep.name} = {ep.value}")
        loaded = next((p for p in host.loaded if p.name == ep.name and normalized(p.package) == normalized(dist.name)), None)
        if loaded is None:
            failures = [f for f in host.failed if f.name == ep.name]
            report.problem(failures[0].describe() if failures else f"plugin {ep.name!r} did not load")
            try:  # its hooks were checked when it failed; they are not unreachable
                modules.append(ep.load())
            except Exception:
                pass
            continue
        modules.append(loaded.module)
        for kind, names in sorted(loaded.components.items()):
            for name in sorted(names):
                _probe_component(host, host.registry.get(kind, name), report)
    _check_hook_implementations(host, dist, modules, report)
    report.lines.append("OK" if not report.problems else f"{len(report.problems)} problem(s)")
    return report


def _check_hook_implementations(
    host: PluginHost, dist: importlib.metadata.Distribution, entry_modules: list[object], report: CheckReport
) -> None:
    """Report hook implementations outside the entry-point modules (whose hooks are checked
    when they load): with a name no spec declares, or else never called."""
    known = sorted(n for n, caller in vars(host.hook).items() if caller.has_spec())
    exposed = {id(value) for module in entry_modules for value in vars(module).values()}
    for module_name, module in _dist_modules(dist, report):
        for attribute, value in sorted(vars(module).items()):
            if not callable(value) or getattr(value, f"{PROJECT}_impl", None) is None:
                continue
            if getattr(value, "__module__", None) != module_name:
                continue  # imported from elsewhere; checked where it is defined
            if id(value) in exposed:
                continue
            where = f"{module_name}:{attribute}"
            if attribute not in known:
                match = closest(attribute, known)
                report.problem(
                    f"hook implementation {where} names no hook spec"
                    + (f"; did you mean {match}?" if match else f" (hooks: {', '.join(known)})")
                )
            else:
                report.problem(
                    f"hook implementation {where} is not reachable from the entry-point module "
                    "(import it there, or point the entry point at its module), so it is never called"
                )


def _dist_modules(dist: importlib.metadata.Distribution, report: CheckReport) -> Iterator[tuple[str, object]]:
    """The distribution's importable Python modules (from its RECORD), imported.

    Only files under the packages the distribution declares (``top_level.txt``) count: an
    editable install's ``*.egg-info`` lists source paths (``core/x.py`` for the package
    ``speechforge``), and importing those under their folder names would load the same code
    a second time as other modules."""
    top_level = set((dist.read_text("top_level.txt") or "").split())
    for path in dist.files or []:
        if path.suffix != ".py":
            continue
        parts = list(path.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if not parts or not all(p.isidentifier() for p in parts):  # scripts, ../bin, dist-info
            continue
        if top_level and parts[0] not in top_level:
            continue
        name = ".".join(parts)
        try:
            yield name, importlib.import_module(name)
        except Exception as error:
            report.problem(f"module {name} failed to import: {type(error).__name__}: {error}")


def _probe_component(host: PluginHost, component: Component, report: CheckReport) -> None:
    label = f"{component.kind} {component.name!r} ({_where(component.factory)})"
    if component.kind not in PROBE_CONTEXT:
        report.lines.append(f"  {label}: not probed (kind {component.kind!r} has no shape contract)")
        return
    required = required_keys(component.factory, PROBE_CONTEXT[component.kind])
    if required:
        report.lines.append(f"  {label}: not probed (required keys: {', '.join(required)})")
        return
    try:
        shapes = PROBES[component.kind](host, component.name)
    except _NotProbed as reason:
        report.lines.append(f"  {label}: not probed ({reason})")
    except Exception as error:
        report.problem(f"{label} failed the probe: {type(error).__name__}: {error}")
    else:
        report.lines.append(f"  {label}: probed, {shapes}")


def required_keys(factory: Callable[..., Any], context: dict[str, Any]) -> list[str]:
    """Config keys ``factory`` needs that have no default and that the context does not give."""
    return [
        name
        for name, p in inspect.signature(factory).parameters.items()
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        and name not in context
    ]


def _where(factory: Callable[..., Any]) -> str:
    return f"{factory.__module__}:{factory.__qualname__}"


class _NotProbed(Exception):
    """The component needs more than the probe gives (a decoder the probe model lacks)."""


def _expect(what: str, tensor: torch.Tensor, shape: tuple[int, ...]) -> str:
    if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape:
        got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise PluginError(f"{what} is {got}, the contract says {shape}")
    if tensor.is_floating_point() and not torch.isfinite(tensor).all():
        raise PluginError(f"{what} has non-finite values")
    return f"{what} {shape}"


def _build(host: PluginHost, kind: str, name: str) -> Any:
    module = host.registry.build(kind, {"type": name}, kind, **PROBE_CONTEXT[kind])
    if isinstance(module, torch.nn.Module):
        module.eval()
    return module


@torch.no_grad()
def _probe_frontend(host: PluginHost, name: str) -> str:
    frontend: Frontend = _build(host, "frontend", name)
    samples = frontend.sample_rate // 5  # 0.2 s
    feats, lengths = frontend(torch.randn(2, samples), torch.tensor([samples, samples * 3 // 4]))
    frames = feats.shape[1] if isinstance(feats, torch.Tensor) else 0
    _expect("lengths", lengths, (2,))
    return _expect("feats", feats, (2, frames, frontend.output_dim))


@torch.no_grad()
def _probe_ffn(host: PluginHost, name: str) -> str:
    ffn: FeedForward = _build(host, "ffn", name)
    return _expect("output", ffn(torch.randn(2, 7, 16)), (2, 7, 16))


@torch.no_grad()
def _probe_attention(host: PluginHost, name: str) -> str:
    attention: Attention = _build(host, "attention", name)
    x = torch.randn(2, 7, 16)
    mask = torch.ones(2, 1, 7, dtype=torch.bool)
    mask[1, :, 5:] = False
    pos_emb = torch.randn(1, 13, 16) if attention.uses_relative_position else None
    out, _ = attention(x, x, x, mask, pos_emb)
    return _expect("output", out, (2, 7, 16))


@torch.no_grad()
def _probe_encoder_block(host: PluginHost, name: str) -> str:
    block: EncoderBlock = _build(host, "encoder_block", name)
    x = torch.randn(2, 7, 16)
    pad_mask = torch.ones(2, 1, 7, dtype=torch.bool)
    pad_mask[1, :, 5:] = False
    out, cache = block(x, pad_mask, pad_mask)
    if cache is not None:
        raise PluginError("returned a streaming state for a call without one")
    return _expect("output", out, (2, 7, 16))


@torch.no_grad()
def _probe_encoder(host: PluginHost, name: str) -> str:
    encoder: Encoder = _build(host, "encoder", name)
    out, lengths = encoder(torch.randn(2, 64, 20), torch.tensor([64, 48]))
    frames = out.shape[1] if isinstance(out, torch.Tensor) else 0
    _expect("lengths", lengths, (2,))
    return _expect("encodings", out, (2, frames, encoder.output_dim))


def _probe_loss(host: PluginHost, name: str) -> str:
    """One forward and backward of the probe model with only this loss. A ConfigError (while
    building or in the forward) means the loss needs a model part the probe model has not (a
    decoder, MoE layers): that loss is not probed rather than failed."""
    from speechforge.builder import build_model

    batch = {
        "speech": torch.randn(2, 4000),
        "speech_lens": torch.tensor([4000, 3000]),
        "targets": torch.tensor([[1, 2, 3], [4, 5, -1]]),
        "target_lens": torch.tensor([3, 2]),
    }
    try:
        model = build_model({**PROBE_MODEL, "losses": [{"type": name, "weight": 1.0}]}, host)
        loss = model(batch)["loss"]
    except ConfigError as error:
        raise _NotProbed(f"the probe model cannot hold it: {error}") from error
    shape = _expect("loss", loss, ())
    loss.backward()
    return shape + ", backward ok"


PROBES: dict[str, Callable[[PluginHost, str], str]] = {
    "frontend": _probe_frontend,
    "ffn": _probe_ffn,
    "attention": _probe_attention,
    "encoder_block": _probe_encoder_block,
    "encoder": _probe_encoder,
    "loss": _probe_loss,
}
