# Sourced by tools/setup_env.sh and tools/setup_bench_peers.sh: one place that knows how a
# virtual environment gets the torch the project runs on.
# torch 2.14.1 is the build torchaudio 2.11 loads with; torchaudio goes in with --no-deps
# because its wheel pins a torch it does not need at run time.

# torch_venv LABEL: create $venv if needed and install torch 2.14.1 + torchaudio 2.11.0; defines
# pip() for $venv. LABEL prefixes the messages.
torch_venv() {
  local label=$1 py=${PYTHON:-python3.11}
  command -v "$py" >/dev/null || py=python3
  if [ ! -x "$venv/bin/python" ]; then
    echo "$label: creating $venv with $($py --version)"
    "$py" -m venv "$venv"
  fi
  pip() { "$venv/bin/python" -m pip --disable-pip-version-check -q "$@"; }
  if ! "$venv/bin/python" -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.14.1")' 2>/dev/null; then
    echo "$label: installing torch 2.14.1 (large; taken from the local wheel cache when present)"
    pip install torch==2.14.1
  fi
  if ! "$venv/bin/python" -c 'import torchaudio' 2>/dev/null; then
    pip install --no-deps torchaudio==2.11.0
  fi
}
