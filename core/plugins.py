"""Plugin discovery: every entry point of the group ``speechforge.plugins`` is a plugin.

Built-in plugins (``speechforge_plugins.*``) are declared in the same group as third-party
packages, so they load through exactly this path. A plugin that fails to import or to register
is reported by name with its exception and skipped; the others still load. Implementing a
hook name that no spec declares (a typo, a hook of another version) is such a failure too.
A lifecycle hook (any hook but ``register_components`` and ``add_commands``, which fail the
plugin instead) that raises stops the command with a :class:`PluginError` naming the plugin
and the hook.
"""
from __future__ import annotations

import functools
import importlib.metadata
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from speechforge import hookspecs
from speechforge.errors import PluginError
from speechforge.interfaces import CORE_KINDS
from speechforge.registry import ComponentRegistry, closest

ENTRY_POINT_GROUP = "speechforge.plugins"
CORE_NAME = "speechforge"
#: Hooks whose errors fail the plugin (recorded, the others keep working) rather than the command.
LOADING_HOOKS = frozenset({"register_components", "add_commands"})
log = logging.getLogger(__name__)


@dataclass
class LoadedPlugin:
    """One plugin as loaded: its entry point name, distribution and components."""

    name: str
    package: str
    module: object
    components: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class FailedPlugin:
    name: str
    package: str
    error: BaseException

    def describe(self) -> str:
        return f"plugin {self.name!r} (from {self.package}) failed: {type(self.error).__name__}: {self.error}"


class PluginHost:
    """The pluggy manager, the component registry and the record of what loaded."""

    def __init__(self) -> None:
        self.manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs)
        self.registry = ComponentRegistry()
        for kind, base, doc in CORE_KINDS:
            self.registry.add_kind(kind, base, doc)
        self.loaded: list[LoadedPlugin] = []
        self.failed: list[FailedPlugin] = []

    @property
    def hook(self) -> pluggy.HookRelay:
        return self.manager.hook

    def add(self, name: str, module: object, package: str) -> None:
        """Register ``module`` as plugin ``name`` and let it fill the registry.

        Registration is all or nothing per plugin: on error the plugin is unregistered, its
        components are removed, and the failure is recorded.
        """
        before = {(c.kind, c.name) for c in self.registry.components()}
        try:
            self.manager.register(module, name=name)
        except Exception as error:  # pluggy validates the signatures of known hooks here
            self.fail(name, package, error)
            return
        unknown = self._unknown_hooks(module)
        if unknown:
            self.manager.unregister(module)
            self.fail(name, package, PluginError(unknown))
            return
        try:
            with self.registry.owned_by(name):
                impls = [i for i in self.hook.register_components.get_hookimpls() if i.plugin is module]
                for impl in impls:
                    impl.function(registry=self.registry)
        except (Exception, SystemExit) as error:
            self.manager.unregister(module)
            attempted = [(c.kind, c.name) for c in self.registry.components() if c.owner == name]
            self.registry.remove_owner(name)
            self.fail(name, package, error, attempted)
            return
        self._attribute_hook_errors(module, name, package)
        components: dict[str, list[str]] = {}
        for c in self.registry.components():
            if (c.kind, c.name) not in before:
                components.setdefault(c.kind, []).append(c.name)
        self.loaded.append(LoadedPlugin(name, package, module, components))

    def _unknown_hooks(self, module: object) -> str:
        """What is wrong with ``module``'s hook implementations whose name no spec declares
        (pluggy accepts them silently until ``check_pending``), or "" when nothing is;
        ``optionalhook=True`` implementations are allowed, as pluggy allows them."""
        known = sorted(n for n, caller in vars(self.hook).items() if caller.has_spec())
        problems = [
            f"implements unknown hook {caller.name!r}"
            + (f"; did you mean {match}?" if (match := closest(caller.name, known)) else f" (hooks: {', '.join(known)})")
            for caller in self.manager.get_hookcallers(module) or []
            if not caller.has_spec() and any(i.plugin is module and not i.optionalhook for i in caller.get_hookimpls())
        ]
        return "; ".join(problems)

    def _attribute_hook_errors(self, module: object, name: str, package: str) -> None:
        """Make each lifecycle hook of ``module`` raise a PluginError naming the plugin and the
        hook, chained to the original error (``HookImpl.function`` is what pluggy calls)."""
        for caller in self.manager.get_hookcallers(module) or []:
            if caller.name in LOADING_HOOKS:
                continue
            for impl in caller.get_hookimpls():
                if impl.plugin is module:
                    impl.function = _attributed(impl.function, f"plugin {name!r} (from {package})", caller.name)  # type: ignore[misc]

    def fail(
        self, name: str, package: str, error: BaseException, components: list[tuple[str, str]] | None = None
    ) -> None:
        """Record that plugin ``name`` failed (to load, or later to add its commands) and log
        it; ``speechforge plugins`` reports every failure and exits 1. A plugin that failed to
        load is named in the registry's error for a component it would have provided
        (``components``: the (kind, name) pairs it registered before failing)."""
        failure = FailedPlugin(name, package, error)
        self.failed.append(failure)
        if all(p.name != name for p in self.loaded):
            self.registry.note_failed_plugin(failure.describe(), components or [])
        log.warning(failure.describe())

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Import and add every plugin declared in ``group`` by any installed distribution."""
        seen: set[str] = set()
        for ep in sorted(importlib.metadata.entry_points(group=group), key=lambda e: e.name):
            package = ep.dist.name if ep.dist is not None else "unknown"
            if ep.name in seen:
                self.fail(ep.name, package, PluginError(f"a plugin named {ep.name!r} is already loaded"))
                continue
            seen.add(ep.name)
            try:
                module = ep.load()
            except (Exception, SystemExit) as error:  # sys.exit() at import; KeyboardInterrupt still stops
                self.fail(ep.name, package, error)
                continue
            self.add(ep.name, module, package)

    def plugin(self, name: str) -> LoadedPlugin:
        for p in self.loaded:
            if p.name == name:
                return p
        raise PluginError(f"no plugin {name!r} is loaded; loaded: {', '.join(p.name for p in self.loaded)}")


def _attributed(function: Callable[..., Any], plugin: str, hook: str) -> Callable[..., Any]:
    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception as error:
            raise PluginError(f"{plugin} failed in hook {hook}: {type(error).__name__}: {error}") from error

    return call


def create_host(entry_point_group: str = ENTRY_POINT_GROUP) -> PluginHost:
    """A fresh host with core's components and every installed plugin."""
    from speechforge import components

    host = PluginHost()
    host.add(CORE_NAME, components, CORE_NAME)
    if host.failed:
        raise PluginError(host.failed[0].describe())
    host.load_entry_points(entry_point_group)
    return host


@functools.cache
def default_host() -> PluginHost:
    """The process-wide host, created on first use."""
    return create_host()


def default_registry() -> ComponentRegistry:
    return default_host().registry
