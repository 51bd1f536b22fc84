"""Typed component registries: one per kind, filled by plugins, read by the builder.

A component is registered under a name with a factory (a class or a function). The builder
calls the factory with keyword arguments only: the keys of the component's config mapping plus
the *context* its parent offers (``d_model``, ``heads``, ...). A factory takes the context keys
it names in its signature and ignores the rest, so an ``ffn`` that does not care about
``heads`` simply does not declare it. Config keys are checked against the signature before the
call, so a misspelt key fails with its dotted path and the closest valid name, and each value
against the hint (and ``Range``) of its parameter (:mod:`speechforge.value_check`); a
``ValueError`` the factory raises becomes a ConfigError naming the component's path.

Children are built through :func:`build_component` from inside a factory; the registry and the
dotted config path of the parent are carried in context variables, so error messages always
name the full path (``encoder.encoder_block.ffn.hidden``) without threading it by hand.
"""
from __future__ import annotations

import contextvars
import difflib
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from speechforge.errors import ConfigError, RegistryError
from speechforge.value_check import check_keys

_current_registry: contextvars.ContextVar[ComponentRegistry | None] = contextvars.ContextVar(
    "speechforge_registry", default=None
)
_current_path: contextvars.ContextVar[str] = contextvars.ContextVar("speechforge_path", default="")


@dataclass(frozen=True)
class Component:
    """One registered factory and who registered it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    owner: str


@dataclass(frozen=True)
class Kind:
    """A kind of component: its name, the base every built instance must be, and its contract."""

    name: str
    base: type
    doc: str


class ComponentConfig(dict):
    """A component's config mapping that remembers the dotted path it was written at, so a
    parent can hand it to children (an encoder's ``ffn`` to every block) and errors still
    name where the user wrote it (``encoder.ffn.hidden``)."""

    def __init__(self, mapping: Mapping[str, Any], path: str) -> None:
        super().__init__(mapping)
        self.path = path


def closest(name: str, candidates: list[str]) -> str | None:
    """The candidate most similar to ``name``, or None when nothing is close."""
    matches = difflib.get_close_matches(name, candidates, n=1, cutoff=0.5)
    return matches[0] if matches else None


def _did_you_mean(name: str, candidates: list[str]) -> str:
    match = closest(name, candidates)
    return f"; did you mean {match}?" if match else ""


def join_path(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


class ComponentRegistry:
    """All kinds and their components. Plugins fill it through ``register_components``."""

    def __init__(self) -> None:
        self._kinds: dict[str, Kind] = {}
        self._components: dict[str, dict[str, Component]] = {}
        self._owner = "speechforge"
        self._failed_plugins: list[tuple[str, set[tuple[str, str]]]] = []

    # -- kinds -----------------------------------------------------------------------------
    def add_kind(self, name: str, base: type, doc: str = "") -> None:
        """Declare a kind of component. A plugin may add kinds of its own."""
        if name in self._kinds:
            raise RegistryError(
                f"registry kind {name!r} is declared twice "
                f"(the second time by {self._owner!r})"
            )
        self._kinds[name] = Kind(name, base, doc)
        self._components[name] = {}

    @property
    def kinds(self) -> list[str]:
        return list(self._kinds)

    def kind(self, name: str) -> Kind:
        if name not in self._kinds:
            raise RegistryError(
                f"unknown registry kind {name!r}; known kinds: {', '.join(self._kinds)}"
                f"{_did_you_mean(name, list(self._kinds))}"
            )
        return self._kinds[name]

    # -- registration ----------------------------------------------------------------------
    def owned_by(self, owner: str) -> _OwnerScope:
        """Context manager: components registered inside it are attributed to ``owner``."""
        return _OwnerScope(self, owner)

    def register(self, kind: str, name: str, factory: Callable[..., Any]) -> Callable[..., Any]:
        """Register ``factory`` as component ``name`` of ``kind``; returns the factory."""
        spec = self.kind(kind)
        if isinstance(factory, type) and not issubclass(factory, spec.base):
            raise RegistryError(
                f"{kind} {name!r} from {self._owner!r}: {factory.__qualname__} is not a "
                f"subclass of {spec.base.__qualname__}, the base every {kind} must have"
            )
        existing = self._components[kind].get(name)
        if existing is not None:
            raise RegistryError(
                f"{kind} {name!r} is registered twice: first by {existing.owner!r}, "
                f"then by {self._owner!r}"
            )
        self._components[kind][name] = Component(kind, name, factory, self._owner)
        return factory

    def remove_owner(self, owner: str) -> None:
        """Drop every component ``owner`` registered (a plugin that failed half-way)."""
        for per_kind in self._components.values():
            for name in [n for n, c in per_kind.items() if c.owner == owner]:
                del per_kind[name]

    def note_failed_plugin(self, description: str, components: list[tuple[str, str]]) -> None:
        """Remember a plugin that failed to load (``description`` says which and why) so that
        looking up a name it would have provided says so; ``components`` are the (kind, name)
        pairs it had registered before failing (none when it failed to import)."""
        self._failed_plugins.append((description, set(components)))

    def _failed_plugin_note(self, kind: str, name: str) -> str:
        """Why ``name`` may be missing: the plugin that registered it failed, else every
        plugin that failed before registering anything."""
        owners = [d for d, names in self._failed_plugins if (kind, name) in names]
        if owners:
            return f"; it comes from {owners[0]}"
        unknown = [d for d, names in self._failed_plugins if not names]
        return "".join(f"; it may come from {d}" for d in unknown)

    # -- lookup ----------------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        return sorted(self._components[self.kind(kind).name])

    def get(self, kind: str, name: str) -> Component:
        components = self._components[self.kind(kind).name]
        if name not in components:
            known = sorted(components)
            raise RegistryError(
                f"unknown {kind} {name!r}; known: {', '.join(known) or '(none)'}"
                f"{_did_you_mean(name, known)}{self._failed_plugin_note(kind, name)}"
            )
        return components[name]

    def components(self) -> Iterator[Component]:
        for per_kind in self._components.values():
            yield from per_kind.values()

    # -- building --------------------------------------------------------------------------
    def build(self, kind: str, config: Mapping[str, Any] | str, key: str, **context: Any) -> Any:
        """Build a component of ``kind`` from ``config`` (a mapping with ``type``, or a name).

        Args:
            kind: registry kind, e.g. ``"ffn"``.
            config: ``{"type": name, **kwargs}`` or just the name.
            key: the config key this component sits under, appended to the current dotted
                path for error messages (``"ffn"`` inside ``encoder`` gives ``encoder.ffn``).
            **context: values the parent offers (``d_model``...); passed where the factory
                declares a parameter of that name.
        """
        path = config.path if isinstance(config, ComponentConfig) else join_path(_current_path.get(), key)
        name, kwargs = _split_type(config, path)
        component = self.get(kind, name)
        arguments = _bind_arguments(component, kwargs, context, path)
        registry_token = _current_registry.set(self)
        path_token = _current_path.set(path)
        try:
            built = component.factory(**arguments)
        except ValueError as error:  # a factory refusing a value (heads not dividing d_model)
            raise ConfigError(f"{path}: {error}") from error
        finally:
            _current_path.reset(path_token)
            _current_registry.reset(registry_token)
        base = self._kinds[kind].base
        if not isinstance(built, base):
            raise RegistryError(
                f"{path}: {kind} {name!r} (from {component.owner!r}) built a "
                f"{type(built).__qualname__}, not a {base.__qualname__}"
            )
        return built


class _OwnerScope:
    def __init__(self, registry: ComponentRegistry, owner: str) -> None:
        self._registry = registry
        self._owner = owner
        self._previous = registry._owner

    def __enter__(self) -> ComponentRegistry:
        self._registry._owner = self._owner
        return self._registry

    def __exit__(self, *exc: object) -> None:
        self._registry._owner = self._previous


def _split_type(config: Mapping[str, Any] | str, path: str) -> tuple[str, dict[str, Any]]:
    if isinstance(config, str):
        return config, {}
    if not isinstance(config, Mapping):
        raise ConfigError(f"{path}: expected a mapping with a 'type' key, got {config!r}")
    kwargs = dict(config)
    name = kwargs.pop("type", None)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{path}.type: missing; every component mapping names its type")
    return name, kwargs


def _bind_arguments(
    component: Component, kwargs: dict[str, Any], context: dict[str, Any], path: str
) -> dict[str, Any]:
    """Check config keys against the factory signature; add the context keys it declares."""
    params = inspect.signature(component.factory).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = [
        n
        for n, p in params.items()
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    for key in kwargs:
        if key in context:
            raise ConfigError(
                f"{join_path(path, key)}: set by the parent ({context[key]!r}); "
                f"remove it from this {component.kind}'s config"
            )
        if key not in named and not accepts_any:
            valid = [n for n in named if n not in context]
            raise ConfigError(
                f"{join_path(path, key)}: unknown key for {component.kind} "
                f"{component.name!r}{_did_you_mean(key, valid)}"
                f" (valid keys: {', '.join(valid) or 'none'})"
            )
    check_keys(component.factory, kwargs, path)
    arguments = {
        k: ComponentConfig(v, join_path(path, k)) if isinstance(v, Mapping) and "type" in v else v
        for k, v in kwargs.items()
    }
    arguments.update({k: v for k, v in context.items() if k in named or accepts_any})
    missing = [
        n
        for n, p in params.items()
        if n in named and p.default is inspect.Parameter.empty and n not in arguments
    ]
    if missing:
        raise ConfigError(
            f"{path}: {component.kind} {component.name!r} needs "
            f"{', '.join(join_path(path, m) for m in missing)}"
        )
    return arguments


def build_component(kind: str, config: Mapping[str, Any] | str, key: str, **context: Any) -> Any:
    """Build a child component from inside a factory (or anywhere, with the default registry).

    Inside :meth:`ComponentRegistry.build` the registry and dotted path of the parent are
    used, so errors read ``encoder.ffn.hidden: ...``. Outside any build the process-wide
    default registry (all installed plugins loaded) is used.
    """
    registry = _current_registry.get()
    if registry is None:
        from speechforge.plugins import default_registry

        registry = default_registry()
    return registry.build(kind, config, key, **context)


def current_path() -> str:
    """The dotted config path of the component being built (``"losses.1"``), for a factory
    that names itself in errors raised after building; ``""`` outside any build."""
    return _current_path.get()
