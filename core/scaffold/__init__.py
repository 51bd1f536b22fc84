"""``speechforge plugins new``: write a complete, installable plugin package.

The package holds a pyproject with the ``speechforge.plugins`` entry point, a component of
the chosen kind (:mod:`speechforge.scaffold.templates`), a test that builds a model with it
and a README. As written it installs, passes its own tests and ``speechforge plugins --check``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from speechforge.errors import ConfigError
from speechforge.scaffold import templates

#: The kinds ``--kind`` accepts.
KINDS = tuple(templates.COMPONENTS)
_NAME = re.compile(r"[a-z][a-z0-9]*([-_][a-z0-9]+)*")


@dataclass(frozen=True)
class PluginNames:
    """The names one package uses: distribution ``my-ffn``, import package and entry point
    ``my_ffn``, component ``my_ffn``, class ``MyFfn``."""

    distribution: str
    package: str
    component: str
    class_name: str

    @classmethod
    def from_distribution(cls, name: str, component: str | None = None) -> PluginNames:
        if not _NAME.fullmatch(name):
            raise ConfigError(
                f"plugin name {name!r}: use lower-case letters, digits and single '-' or '_' "
                "between them, starting with a letter (e.g. my-ffn)"
            )
        package = name.replace("-", "_")
        component = component or package.removeprefix("speechforge_")
        if not component.isidentifier():
            raise ConfigError(f"--component {component!r}: must be a Python identifier (e.g. my_ffn)")
        class_name = "".join(part.capitalize() for part in component.split("_"))
        return cls(name, package, component, class_name)


def write_package(names: PluginNames, kind: str, directory: Path) -> list[Path]:
    """Write the package for a component of ``kind`` into ``directory/names.distribution``.

    Returns the files written. Raises: ConfigError for an unknown kind or an existing target.
    """
    if kind not in templates.COMPONENTS:
        raise ConfigError(f"--kind {kind!r}: the scaffold knows {', '.join(KINDS)}")
    root = directory / names.distribution
    if root.exists():
        raise ConfigError(f"{root}: already exists; choose another --dir or name")
    values = {
        "distribution": names.distribution,
        "package": names.package,
        "component": names.component,
        "Class": names.class_name,
        "kind": kind,
    }
    values["config_snippet"] = Template(templates.CONFIG_SNIPPETS[kind]).substitute(values)
    files = {
        root / "pyproject.toml": templates.PYPROJECT,
        root / "README.md": templates.README,
        root / names.package / "__init__.py": templates.PLUGIN_MODULE,
        root / names.package / f"{kind}.py": templates.COMPONENTS[kind],
        root / "tests" / f"test_{names.component}.py": templates.TESTS[kind],
    }
    rendered = {path: Template(template.lstrip("\n")).substitute(values) for path, template in files.items()}
    for path, text in rendered.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(rendered)
