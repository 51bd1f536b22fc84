#!/usr/bin/env bash
# Create (or reuse) the project virtual environment .venv at the repository root: torch (see
# tools/torch_venv.sh), then speechforge in editable mode with its dependencies.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
source "$root/tools/torch_venv.sh"
torch_venv setup

marker="$venv/.speechforge-installed"
if [ ! -f "$marker" ] || [ "$root/pyproject.toml" -nt "$marker" ]; then
  echo "setup: installing speechforge (editable) and its dependencies"
  pip install -e "$root[dev]"
  touch "$marker"
fi
echo "setup: $venv ready"
