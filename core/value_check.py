"""Config values checked against type hints and declared ranges, before anything is built.

Every component factory's signature and every runtime dataclass (``train``, ``data``...) already
says what a key accepts: ``num_blocks: int``, ``activation: str``, ``betas: list[float]``. This
module reads those hints and refuses a value that does not fit with one line naming the dotted
key, the value and what is accepted (``encoder.num_blocks: expected an integer, got 'two'``),
instead of a ``TypeError`` deep inside ``torch`` or a silent string where a number was meant.

A hint may carry a :class:`Range` through ``typing.Annotated``
(``accum_grad: Annotated[int, Range(ge=1)] = 1``); the range is part of the documented
signature and checked the same way. Hints this module does not know (a class, a ``Callable``)
accept every value, so a plugin is never refused for an annotation style we did not foresee.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from speechforge.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """Bounds of a number: ``gt``/``ge`` below, ``lt``/``le`` above (None: unbounded)."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    def admits(self, value: float) -> bool:
        return not (
            (self.gt is not None and value <= self.gt)
            or (self.ge is not None and value < self.ge)
            or (self.lt is not None and value >= self.lt)
            or (self.le is not None and value > self.le)
        )

    def __str__(self) -> str:
        low = f"> {self.gt}" if self.gt is not None else f">= {self.ge}" if self.ge is not None else ""
        high = f"< {self.lt}" if self.lt is not None else f"<= {self.le}" if self.le is not None else ""
        return " and ".join(part for part in (low, high) if part)


def type_hints(target: Callable[..., Any]) -> dict[str, Any]:
    """Resolved hints (``Annotated`` kept) of a function, a class's ``__init__`` or a dataclass;
    ``{}`` when they cannot be resolved (a name imported only for type checkers)."""
    try:
        if dataclasses.is_dataclass(target):
            return typing.get_type_hints(target, include_extras=True)
        function = target.__init__ if isinstance(target, type) else target
        return typing.get_type_hints(function, include_extras=True)
    except Exception:  # an unresolvable annotation: nothing to check against
        return {}


def check_value(value: Any, hint: Any, path: str) -> None:
    """Raise ConfigError naming ``path`` when ``value`` does not fit ``hint``."""
    problem = _mismatch(value, hint)
    if problem is not None:
        raise ConfigError(f"{path}: expected {problem}, got {value!r}{_suggestion(value, hint)}")


def _suggestion(value: Any, hint: Any) -> str:
    """``; did you mean cosine?`` for a misspelt choice of a ``Literal``."""
    if get_origin(hint) is Annotated:
        hint = get_args(hint)[0]
    if get_origin(hint) is not Literal or not isinstance(value, str):
        return ""
    from speechforge.registry import closest

    match = closest(value, [c for c in get_args(hint) if isinstance(c, str)])
    return f"; did you mean {match}?" if match else ""


def check_keys(target: Callable[..., Any], values: Mapping[str, Any], path: str) -> None:
    """Check each of ``values`` (config keys) against the hint of the parameter or field of
    ``target`` it sets; errors read ``{path}.{key}: expected ..., got ...``."""
    hints = type_hints(target)
    for key, value in values.items():
        if key in hints:
            check_value(value, hints[key], f"{path}.{key}" if path else key)


def _mismatch(value: Any, hint: Any) -> str | None:
    """What ``hint`` accepts, when ``value`` does not fit it; None when it fits."""
    if hint is Any or hint is inspect.Parameter.empty:
        return None
    origin = get_origin(hint)
    if origin is Annotated:
        base, *extras = get_args(hint)
        problem = _mismatch(value, base)
        if problem is not None:
            return problem
        for extra in extras:
            if isinstance(extra, Range) and not extra.admits(value):
                return f"{_describe(base)} {extra}"
        return None
    if hint is None or hint is type(None):
        return None if value is None else "no key"
    if origin is Union or isinstance(hint, types.UnionType):
        options = get_args(hint)
        if any(_mismatch(value, option) is None for option in options):
            return None
        return _describe(hint)
    if origin is Literal:
        choices = get_args(hint)
        return None if value in choices else "one of " + ", ".join(repr(c) for c in choices)
    if hint is bool:
        return None if isinstance(value, bool) else "true or false"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if hint is float:
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"
    if hint is str:
        return None if isinstance(value, str) else "a string"
    if origin in (list, tuple, collections.abc.Sequence) or hint in (list, tuple):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            return _describe(hint)
        args = [a for a in get_args(hint) if a is not Ellipsis]
        if len(args) == 1 or (origin is tuple and len(set(args)) == 1 and args):
            for item in value:
                if _mismatch(item, args[0]) is not None:
                    return _describe(hint)
        return None
    if origin in (dict, collections.abc.Mapping) or hint in (dict, Mapping):
        if not isinstance(value, Mapping):
            return _describe(hint)
        args = get_args(hint)
        if len(args) == 2:
            for item in value.values():
                if _mismatch(item, args[1]) is not None:
                    return _describe(hint)
        return None
    return None  # a class, a Callable...: not a config value we can judge


def _describe(hint: Any) -> str:
    """``hint`` in words a config author reads (``a list of numbers``)."""
    origin = get_origin(hint)
    if origin is Annotated:
        return _describe(get_args(hint)[0])
    if hint is None or hint is type(None):
        return "no key"  # None is a key's default: leaving it out (or null) gives it
    if get_origin(hint) is Union or isinstance(hint, types.UnionType):
        alternatives = [a for option in get_args(hint) for a in (["true", "false"] if option is bool else [_describe(option)])]
        return ", ".join(alternatives[:-1]) + " or " + alternatives[-1]
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if hint in names:
        return names[hint]
    if origin is Literal:
        return "one of " + ", ".join(repr(c) for c in get_args(hint))
    if origin in (list, tuple, collections.abc.Sequence) or hint in (list, tuple):
        args = [a for a in get_args(hint) if a is not Ellipsis]
        return f"a list of {_plural(args[0])}" if len(args) == 1 else "a list"
    if origin in (dict, collections.abc.Mapping) or hint in (dict, Mapping):
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def _plural(hint: Any) -> str:
    if get_origin(hint) is Annotated:
        base, *extras = get_args(hint)
        return " ".join([_plural(base), *(str(e) for e in extras if isinstance(e, Range))])
    words = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
    return words.get(hint, _describe(hint))
