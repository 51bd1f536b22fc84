#!/usr/bin/env bash
# Build the k2 reference environment (.venv-k2: Python 3.10, torch 1.13.1, k2 1.23.4) and write
# the pruned RNN-T parity fixtures with the REAL k2 into tests/plugins/rnnt/fixtures/, then check
# the plugin's backend='k2' path against its native one (tools/check_rnnt_k2_backend.py).
#
# Rerun from the repository root:   bash tools/make_rnnt_fixtures.sh
# (idempotent: the venv is reused when it already imports k2 1.23.4; the fixtures are rewritten.)
# The same venv runs the k2 case of bench/rnnt_loss.py when it exists.
#
# PyPI's k2 1.23.4 wheels carry non-standard tags (py3.10-none-any, ...), so pip's resolver may
# pick the wheel of another Python; the Python 3.10 wheel is therefore named by its PyPI URL.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-k2
py="${PYENV_ROOT:-$(pyenv root)}/versions/3.10.13/bin/python"
k2_wheel="https://files.pythonhosted.org/packages/eb/5f/db4f6681451636791ae163448ddedc5e505a18b42af4dd76a09779c2fbd5/k2-1.23.4-py3.10-none-any.whl#sha256=1404589732fdb7f6f5bf62297a20dd73318b7b4f2e10dd52dc3d5b6669688a4c"

if ! "$venv/bin/python" -c 'import k2, sys, importlib.metadata as m; sys.exit(m.version("k2") != "1.23.4")' 2>/dev/null; then
  echo "make_rnnt_fixtures: building $venv with $("$py" --version)"
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  pip() { "$venv/bin/python" -m pip --disable-pip-version-check -q "$@"; }
  pip install "torch==1.13.1" "numpy<2" graphviz
  pip install --no-deps "$k2_wheel"
fi
echo "make_rnnt_fixtures: writing fixtures with $("$venv/bin/python" -c 'import k2, torch, importlib.metadata as m; print("k2", m.version("k2"), "torch", torch.__version__)')"
"$venv/bin/python" tools/make_rnnt_fixtures.py tests/plugins/rnnt/fixtures

# the plugin's backend='k2' path against its native one (plugins importable as speechforge_plugins)
plugin_path=$(mktemp -d)
trap 'rm -rf "$plugin_path"' EXIT
ln -s "$PWD/plugins" "$plugin_path/speechforge_plugins"
PYTHONPATH="$plugin_path" "$venv/bin/python" tools/check_rnnt_k2_backend.py
