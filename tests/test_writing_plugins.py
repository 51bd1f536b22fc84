"""docs/writing_plugins.md runs as written: its blocks, in order, in an empty folder, from the
scaffold to a few trained steps of a model with the new FFN (pip installs into a folder on
PYTHONPATH, never into the environment)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "writing_plugins.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)

#: What the guide's commands mean here: pip installs into $SITE; speechforge and python are
#: this interpreter's.
SHIMS = f'''
set -euo pipefail
python() {{ "{sys.executable}" "$@"; }}
speechforge() {{ "{sys.executable}" -m speechforge.cli "$@"; }}
pip() {{
  if [ "$1" = install ]; then shift; "{sys.executable}" -m pip install -q --no-deps --no-build-isolation --target "$SITE" "$@";
  else "{sys.executable}" -m pip "$@"; fi
}}
'''


def guide_steps() -> list[tuple[str, str]]:
    """("run", script) and ("write", path + "\\n" + text) in the guide's order."""
    steps = []
    for language, body in BLOCK.findall(GUIDE.read_text()):
        first, _, rest = body.partition("\n")
        if first.startswith("# file: "):
            steps.append(("write", first.removeprefix("# file: ").strip() + "\n" + rest))
        elif language == "bash":
            steps.append(("run", body))
    return steps


@pytest.mark.slow
def test_the_guide_runs_from_an_empty_folder_to_trained_steps(tmp_path):
    work, site = tmp_path / "work", tmp_path / "site"
    work.mkdir()
    env = {**os.environ, "SITE": str(site), "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    steps = guide_steps()
    printed = ""
    assert [kind for kind, _ in steps].count("run") >= 3
    for kind, content in steps:
        if kind == "write":
            path, _, text = content.partition("\n")
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).write_text(text)
            continue
        done = subprocess.run(["bash", "-c", SHIMS + content], cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{content}\n{done.stdout}\n{done.stderr}"
        printed += done.stdout
    assert "ffn 'squared_relu' (speechforge_squared_relu.ffn:SquaredRelu): probed, output (2, 7, 16)" in printed
    assert "code: speechforge_squared_relu.ffn:SquaredRelu" in printed
    checkpoints = sorted((work / "exp" / "checkpoints").glob("*.pt"))
    assert checkpoints, list((work / "exp").rglob("*"))
    state = torch.load(checkpoints[-1], weights_only=True)
    weights = state.get("model", state)
    assert "encoder.blocks.0.feed_forward.w_in.weight" in weights  # the guide's FFN, not core's dense
