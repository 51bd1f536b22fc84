#!/usr/bin/env bash
# Create (or reuse) the project virtual environment .venv at the repository root.
# torch 2.14.1 is the build torchaudio 2.11 loads with; torchaudio goes in with --no-deps
# because its wheel pins a torch it does not need at run time.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
py=${PYTHON:-python3.11}
command -v "$py" >/dev/null || py=python3

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv with $($py --version)"
  "$py" -m venv "$venv"
fi
pip() { "$venv/bin/python" -m pip --disable-pip-version-check -q "$@"; }

if ! "$venv/bin/python" -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.14.1")' 2>/dev/null; then
  echo "setup: installing torch 2.14.1 (large; taken from the local wheel cache when present)"
  pip install torch==2.14.1
fi
if ! "$venv/bin/python" -c 'import torchaudio' 2>/dev/null; then
  pip install --no-deps torchaudio==2.11.0
fi
marker="$venv/.speechforge-installed"
if [ ! -f "$marker" ] || [ "$root/pyproject.toml" -nt "$marker" ]; then
  echo "setup: installing speechforge (editable) and its dependencies"
  pip install -e "$root[dev]"
  touch "$marker"
fi
echo "setup: $venv ready"
