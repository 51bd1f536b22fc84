"""Every live hook has a heading with its exact signature in docs/plugin_hooks.md, and every
heading there is a live hook (as datasette does for its plugin hooks)."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

from speechforge.plugins import create_host

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugin_hooks.md"


def documented() -> dict[str, str]:
    headings = re.findall(r"^### `(\w+)(\(.*\) -> .*)`$", DOC.read_text(), flags=re.M)
    return dict(headings)


def live() -> dict[str, str]:
    host = create_host()
    return {
        name: str(inspect.signature(caller.spec.function)).replace("'", "")
        for name, caller in vars(host.hook).items()
        if caller.spec is not None
    }


def test_every_hook_is_documented_with_its_signature():
    docs = documented()
    for name, signature in live().items():
        assert name in docs, f"hook {name} has no heading in {DOC.name}"
        assert docs[name] == signature, f"{name}: documented {docs[name]}, live {signature}"


def test_no_documented_hook_is_missing():
    assert set(documented()) <= set(live())
