"""``speechforge plugins --show KIND NAME``: a component's config keys and where its code is,
so a reader goes from a YAML ``type:`` to the class in one step."""
from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

from speechforge.plugins import PluginHost

#: The keys each kind's parent offers the factory (interfaces.py); never written in YAML.
CONTEXT_KEYS: dict[str, frozenset[str]] = {
    "frontend": frozenset(),
    "ffn": frozenset({"d_model"}),
    "attention": frozenset({"d_model", "heads"}),
    "encoder_block": frozenset({"d_model", "heads", "ffn", "attention", "dropout", "causal"}),
    "encoder": frozenset({"input_dim"}),
    "decoder": frozenset({"vocab_size", "encoder_dim"}),
    "loss": frozenset({"vocab_size", "encoder_dim"}),
    "search": frozenset({"lm"}),
    "task": frozenset({"vocab_size"}),
}


def key_docs(factory: Callable[..., Any]) -> dict[str, str]:
    """First line of each parameter's doc, from ``Args:`` sections (Google style) or ``:param
    name:`` fields of the factory's docstring and, for a class, its ``__init__``'s."""
    docs: dict[str, str] = {}
    sources = [inspect.getdoc(factory) or ""]
    if isinstance(factory, type):
        sources.append(inspect.getdoc(factory.__init__) or "")
    for text in sources:
        for match in re.finditer(r"^\s*:param (\w+):\s*(.+)$", text, re.MULTILINE):
            docs.setdefault(match[1], match[2].strip())
        section = re.search(r"^(Args|Arguments|Parameters):\s*$(.*?)(?=^\S|\Z)", text, re.MULTILINE | re.DOTALL)
        if section:
            for match in re.finditer(r"^\s+([\w, ]+?)(?: \([^)]*\))?:\s*(.+)$", section[2], re.MULTILINE):
                for name in match[1].split(","):
                    docs.setdefault(name.strip(), match[2].strip())
    return docs


def _type_name(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return "-"
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", repr(annotation))


def show_component(host: PluginHost, kind: str, name: str) -> list[str]:
    """The lines ``--show`` prints. Raises RegistryError for an unknown kind or name."""
    component = host.registry.get(kind, name)
    factory = component.factory
    package = next((p.package for p in host.loaded if p.name == component.owner), component.owner)
    docs = key_docs(factory)
    context = CONTEXT_KEYS.get(kind, frozenset())
    lines = [
        f"{kind} {name}",
        f"  provided by plugin {component.owner} (package {package})",
        f"  code: {factory.__module__}:{factory.__qualname__}",
    ]
    summary = (inspect.getdoc(factory) or "").split("\n", 1)[0]
    if summary:
        lines.append(f"  {summary}")
    rows = []
    for key, p in inspect.signature(factory).parameters.items():
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        if key in context:
            default = "(from the parent)"
        elif p.default is inspect.Parameter.empty:
            default = "(required)"
        else:
            default = repr(p.default)
        rows.append((key, _type_name(p.annotation), default, docs.get(key, "")))
    if not rows:
        lines.append("  keys: none")
        return lines
    widths = [max(len(r[i]) for r in rows + [("key", "type", "default", "")]) for i in range(3)]
    lines.append(f"  {'key':{widths[0]}}  {'type':{widths[1]}}  {'default':{widths[2]}}  doc")
    lines.extend(f"  {k:{widths[0]}}  {t:{widths[1]}}  {d:{widths[2]}}  {doc}".rstrip() for k, t, d, doc in rows)
    return lines
